#!/bin/sh
# tests/fuzz/run.sh [SECONDS]: fuzzes proxy/http1.c for SECONDS (default 60).
#
# Builds tests/fuzz/fuzz_http1.c with clang -fsanitize=fuzzer,address,undefined
# into build-fuzz/, seeds build-fuzz/corpus from the shared llhttp corpora
# (tests/fuzz/seed_corpus.c, jansson), then runs libFuzzer. The corpus grows
# across runs; crashing inputs land in build-fuzz/crashes/ (turn each into a
# case of tests/unit/test_px_http1.c once fixed).
#
# Environment: CUTOVER_SHARED (default ../shared beside the tree), CLANG
# (default clang).
set -eu

secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
shared=${CUTOVER_SHARED:-$root/../shared}
clang=${CLANG:-clang}
out=build-fuzz
warn="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror"
defs="-I. -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE"

if [ ! -f "$shared/corpora/llhttp-requests.json" ]; then
    echo "fuzz: $shared/corpora/llhttp-requests.json not found (set CUTOVER_SHARED)" >&2
    exit 1
fi

mkdir -p "$out/corpus" "$out/crashes"
echo "  FUZZ-CC $out/fuzz_http1"
$clang $warn $defs -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    proxy/http1.c tests/fuzz/fuzz_http1.c -o "$out/fuzz_http1"
echo "  CC  $out/seed_corpus"
${CC:-cc} $warn $defs -O1 tests/fuzz/seed_corpus.c \
    $(pkg-config --cflags --libs jansson) -o "$out/seed_corpus"
"$out/seed_corpus" "$shared/corpora" "$out/corpus"

cat > "$out/http1.dict" <<'EOF'
"HTTP/1.1"
"HTTP/1.0"
" HTTP/1.1\x0d\x0a"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: "
"Content-Length: "
"Transfer-Encoding: "
"chunked"
"gzip, chunked"
"Connection: "
"close"
"keep-alive"
"upgrade"
"Upgrade: "
"TE: trailers"
"Expect: 100-continue"
"Keep-Alive: "
"Proxy-Connection: "
"X-Forwarded-For"
"OPTIONS * "
"CONNECT "
"http://"
"https://"
"GET / "
"HTTP/1.1 200 OK\x0d\x0a"
"HTTP/1.1 204 "
"HTTP/1.1 304 "
"HTTP/1.1 101 "
"0\x0d\x0a\x0d\x0a"
";ext=\"v\""
"ffffffffffffffff"
EOF

echo "  FUZZ $out/fuzz_http1 for ${secs}s"
exec "$out/fuzz_http1" -max_total_time="$secs" -max_len=4096 \
    -dict="$out/http1.dict" -artifact_prefix="$out/crashes/" \
    -print_final_stats=1 "$out/corpus"
