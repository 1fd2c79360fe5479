#!/bin/sh
# tests/fuzz/run.sh [SECONDS]: fuzzes for SECONDS in all (default 60): half
# on lib/http1.c and lib/h1chunk.c (heads and chunked bodies), a third on
# the admin endpoint's request path (admin/http_req.c over lib/http1.c,
# admin/tokens.c), a sixth on shadow traffic's JSON normaliser and
# response comparison (health/diff.c, tests/fuzz/fuzz_diff.c).
#
# Builds tests/fuzz/fuzz_http1.c and tests/fuzz/fuzz_admin_http.c with clang
# -fsanitize=fuzzer,address,undefined into build-fuzz/, seeds build-fuzz/corpus
# from the llhttp corpora in tests/corpora/ (tests/fuzz/seed_corpus.c, jansson) and
# build-fuzz/corpus-admin with a few admin requests and token files, then
# runs libFuzzer on each. The corpora grow across runs; crashing inputs land
# in build-fuzz/crashes/ (turn each into a case of tests/unit/test_lib_http1.c
# or tests/unit/test_adm_http_req.c once fixed).
#
# Environment: CLANG
# (default clang).
set -eu

secs=${1:-60}
admin_secs=$((secs / 3))
[ "$admin_secs" -ge 1 ] || admin_secs=1
diff_secs=$((secs / 6))
[ "$diff_secs" -ge 1 ] || diff_secs=1
http1_secs=$((secs - admin_secs - diff_secs))
[ "$http1_secs" -ge 1 ] || http1_secs=1
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
corpora=$root/tests/corpora
clang=${CLANG:-clang}
out=build-fuzz
warn="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror"
defs="-I. -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE"

if [ ! -f "$corpora/llhttp-requests.json" ]; then
    echo "fuzz: $corpora/llhttp-requests.json not found" >&2
    exit 1
fi

mkdir -p "$out/corpus" "$out/crashes"
echo "  FUZZ-CC $out/fuzz_http1"
$clang $warn $defs -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    lib/http1.c lib/h1chunk.c tests/fuzz/fuzz_http1.c -o "$out/fuzz_http1"
echo "  CC  $out/seed_corpus"
${CC:-cc} $warn $defs -O1 tests/fuzz/seed_corpus.c \
    $(pkg-config --cflags --libs jansson) -o "$out/seed_corpus"
"$out/seed_corpus" "$corpora" "$out/corpus"

cat > "$out/http1.dict" <<'EOF'
"HTTP/1.1"
"HTTP/1.0"
" HTTP/1.1\x0d\x0a"
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"Host: "
"Content-Length: "
"Transfer-Encoding: "
"Transfer_Encoding: "
"Content_Length: "
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
"#frag"
"M-SEARCH "
"ffffffffffffffff"
EOF

echo "  FUZZ $out/fuzz_http1 for ${http1_secs}s"
"$out/fuzz_http1" -max_total_time="$http1_secs" -max_len=4096 \
    -dict="$out/http1.dict" -artifact_prefix="$out/crashes/" \
    -print_final_stats=1 "$out/corpus"

echo "  FUZZ-CC $out/fuzz_diff"
$clang $warn $defs -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    health/diff.c lib/xmalloc.c tests/fuzz/fuzz_diff.c \
    $(pkg-config --cflags --libs jansson libxxhash) -lm -o "$out/fuzz_diff"
mkdir -p "$out/corpus-diff"
printf '\020\003{"a":1,"b":[1,2]}{"b":[1,2.0],"a":1}' > "$out/corpus-diff/order"
printf '\016\001{"ts":1,"v":"x"}{"ts":2,"v":"y"}' > "$out/corpus-diff/ts"
printf '\030\005{"items":[{"id":1,"v":1}]}[{"a":{"b":null}},true]' > "$out/corpus-diff/items"
printf '\006\002[1e400,-0.0,9007199254740993]["\\u0000",{}]' > "$out/corpus-diff/numbers"
cat > "$out/diff.dict" <<'DICT'
"{"
"}"
"["
"]"
":"
","
"\""
"\"ts\""
"\"items\""
"\"id\""
"1.0"
"1e0"
"-0"
"null"
"true"
"false"
"\\u0000"
DICT
echo "  FUZZ $out/fuzz_diff for ${diff_secs}s"
"$out/fuzz_diff" -max_total_time="$diff_secs" -max_len=4096 -dict="$out/diff.dict" \
    -artifact_prefix="$out/crashes/" -print_final_stats=1 "$out/corpus-diff"

echo "  FUZZ-CC $out/fuzz_admin_http"
$clang $warn $defs -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    admin/http_req.c lib/http1.c admin/tokens.c lib/xmalloc.c tests/fuzz/fuzz_admin_http.c \
    $(pkg-config --cflags --libs openssl) -o "$out/fuzz_admin_http"
mkdir -p "$out/corpus-admin"
printf 'GET /status HTTP/1.1\r\nHost: a\r\n\r\n' > "$out/corpus-admin/get"
printf 'POST /v1/weight HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nContent-Length: 15\r\n\r\n{"percent":10}\n' \
    > "$out/corpus-admin/post"
printf 'GET /status?x HTTP/1.1\r\nHost: a\r\nAuthorization: bearer read-secret-0123456789\r\n\r\n' \
    > "$out/corpus-admin/get-token"
printf 'GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n' \
    > "$out/corpus-admin/http10"
printf '# tokens\nreader read read-secret-0123456789\nops operate sha256:%064d\n' 0 \
    > "$out/corpus-admin/tokens"
printf '{"a":[[{"b":"[[\\"]]"}]]}' > "$out/corpus-admin/json"
cat > "$out/admin.dict" <<'EOF'
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
"HTTP/1.1"
"HTTP/1.0"
"Host: "
"Content-Length: "
"Transfer-Encoding: chunked"
"Authorization: Bearer "
"read-secret-0123456789"
"Connection: close"
"Expect: 100-continue"
"POST /v1/"
"GET /status "
" read "
" operate "
" admin "
"sha256:"
"#"
"{\"cmd\":"
"[["
EOF

echo "  FUZZ $out/fuzz_admin_http for ${admin_secs}s"
exec "$out/fuzz_admin_http" -max_total_time="$admin_secs" -max_len=10000 \
    -dict="$out/admin.dict" -artifact_prefix="$out/crashes/" \
    -print_final_stats=1 "$out/corpus-admin"
