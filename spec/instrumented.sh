# Sourced by spec/valgrind.sh and spec/sanitize.sh: the spec files the instrumented runs take.
# They leave out the specs whose code under test is Lua talking to other processes (the HTTP
# client, Jicoo's API client and reconcile, the Redis client and journal) or reading the
# project's own files (the docs, the layers, the editors' addon): no C of ours runs there that
# the other specs do not run, and under valgrind they cost a minute. The native Busted runs
# (busted-<runtime>) take every spec on every runtime.
NATIVE_ONLY="http_spec api_spec cli_reconcile_spec redis_client_spec journal_redis_spec redis_sentinel_spec
  redis_cluster_spec readme_spec layers_spec editors_spec"
# And valgrind leaves out the specs whose C runs in the command line's own processes: valgrind
# does not follow them (the sanitizers' build does, through the environment they inherit), so
# under valgrind these cost 40 s and check no C of ours.
CHILDREN_ONLY="cli_spec cli_deliveries_spec cli_deliveries_bulk_spec cli_nginx_spec cli_run_spec"

instrumented_specs() {
  skip="$NATIVE_ONLY ${1:-}"
  for file in spec/*_spec.lua; do
    name=$(basename "$file" .lua)
    case " $(echo $skip) " in
      *" $name "*) ;;
      *) printf '%s\n' "$file" ;;
    esac
  done
}
