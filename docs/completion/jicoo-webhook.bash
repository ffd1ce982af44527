_jicoo-webhook() {
    local IFS=$' \t\n'
    local args cur prev cmd opts arg
    args=("${COMP_WORDS[@]}")
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    opts="-h --help --version"

    args=("${args[@]:1}")
    for arg in "${args[@]}"; do
        case "$arg" in
            help)
                cmd="help"
                opts="$opts -h --help"
                break
                ;;
            check)
                cmd="check"
                opts="$opts -h --help --strict --json --max-depth --max-items --max-key --max-keys --max-size --max-string --max-values"
                break
                ;;
            sign)
                cmd="sign"
                opts="$opts -h --help --secret --time"
                break
                ;;
            verify)
                cmd="verify"
                opts="$opts -h --help --secret --header --tolerance --now"
                break
                ;;
            send)
                cmd="send"
                opts="$opts -h --help --secret --timeout --ca-file"
                break
                ;;
            run)
                cmd="run"
                opts="$opts -h --help --strict --set"
                break
                ;;
            check-handlers)
                cmd="check-handlers"
                opts="$opts -h --help"
                break
                ;;
            example)
                cmd="example"
                opts="$opts -h --help --now"
                break
                ;;
            nginx)
                cmd="nginx"
                opts="$opts -h --help --listen --handlers --workers --core"
                break
                ;;
            deliveries)
                cmd="deliveries"
                opts="$opts -h --help"
                args=("${args[@]:1}")
                for arg in "${args[@]}"; do
                    case "$arg" in
                        list)
                            cmd="$cmd list"
                            opts="$opts -h --help --journal --redis --state --event --uid --since --until --error --limit --json --body"
                            break
                            ;;
                        show)
                            cmd="$cmd show"
                            opts="$opts -h --help --journal --redis"
                            break
                            ;;
                        retry)
                            cmd="$cmd retry"
                            opts="$opts -h --help --journal --redis --state --event --uid --since --until --error --limit --json --all --dry-run"
                            break
                            ;;
                        drop)
                            cmd="$cmd drop"
                            opts="$opts -h --help --journal --redis --state --event --uid --since --until --error --limit --json --all --dry-run --yes"
                            break
                            ;;
                        stats)
                            cmd="$cmd stats"
                            opts="$opts -h --help --journal --redis --json"
                            break
                            ;;
                        import)
                            cmd="$cmd import"
                            opts="$opts -h --help --journal --from-files"
                            break
                            ;;
                    esac
                done
                break
                ;;
            reconcile)
                cmd="reconcile"
                opts="$opts -h --help --since --journal --redis --json --deliver --handlers --set --api-key --api-url --ca-file --timeout"
                break
                ;;
            completion)
                cmd="completion"
                opts="$opts -h --help"
                break
                ;;
            man)
                cmd="man"
                opts="$opts -h --help"
                break
                ;;
            annotations)
                cmd="annotations"
                opts="$opts -h --help"
                break
                ;;
        esac
    done

    case "$cmd" in
        '')
            COMPREPLY=($(compgen -W "help check sign verify send run check-handlers example nginx deliveries reconcile completion man annotations" -- "$cur"))
            ;;
        'help')
            COMPREPLY=($(compgen -W "help check sign verify send run check-handlers example nginx deliveries reconcile completion man annotations" -- "$cur"))
            ;;
        'check')
            case "$prev" in
                --max-depth)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-items)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-key)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-keys)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-size)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-string)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --max-values)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'sign')
            case "$prev" in
                --secret)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --time)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'verify')
            case "$prev" in
                --secret)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --header)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --tolerance)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --now)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'send')
            case "$prev" in
                --secret)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --ca-file)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'run')
            case "$prev" in
                --set)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'nginx')
            case "$prev" in
                --listen)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --handlers)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --workers)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --core)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries')
            COMPREPLY=($(compgen -W "list show retry drop stats import" -- "$cur"))
            ;;
        'deliveries list')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --state)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --event)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --uid)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --since)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --until)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --error)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --limit)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries show')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries retry')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --state)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --event)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --uid)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --since)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --until)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --error)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --limit)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries drop')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --state)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --event)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --uid)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --since)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --until)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --error)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --limit)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries stats')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'deliveries import')
            case "$prev" in
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --from-files)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
        'reconcile')
            case "$prev" in
                --since)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --journal)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --redis)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --handlers)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --set)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --api-key)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --api-url)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --ca-file)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f -- "$cur"))
                    return 0
                    ;;
            esac

            ;;
    esac

    if [[ "$cur" = -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    fi
}

complete -F _jicoo-webhook -o bashdefault -o default jicoo-webhook
