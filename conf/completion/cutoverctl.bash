# bash completion for cutoverctl and cutoverd, installed by `make install` as
# share/bash-completion/completions/cutoverctl (and .../cutoverd). The lists
# below are checked against `cutoverctl help` by tests/tools/check-install.sh,
# so a command added to cutoverctl's table without its completion fails
# make test.

_cutoverctl()
{
    local cur prev cmd i
    local commands="status weight rollback promote switch plan gates server audit certs diffs watch help"
    local globals="-s --socket -S --service --json -h --help -V --version"
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}

    case $prev in
        -s|--socket) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -S|--service|--reason|--drain-s|-n) return ;;
    esac
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -s|--socket|-S|--service|--reason|--drain-s|-n) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$globals" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi
    local words= opts=
    case $cmd in
        weight|promote) opts="--reason --force" ;;
        rollback) opts="--reason --drain-s" ;;
        switch) words="new legacy"; opts="--reason --drain-s --force" ;;
        plan) words="start pause resume abort"; opts="--reason --force" ;;
        certs) words="reload"; opts="--reason" ;;
        server) words="drain disable enable legacy new"; opts="--reason" ;;
        status|watch) opts="--fleet" ;;
        audit|diffs) opts="-n" ;;
        help) words=$commands ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts $globals" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}
complete -F _cutoverctl cutoverctl

_cutoverd()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

    case $prev in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -R|--seed) return ;;
    esac
    COMPREPLY=($(compgen -W "-c --config -t --test --check-store --check-gates -d --debug -R --seed -h --help -V --version" -- "$cur"))
}
complete -F _cutoverd cutoverd
