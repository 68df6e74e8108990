#!/bin/sh
# A worker program in plain sh, for `supervisor --worker-cmd 'sh echo_worker.sh'`:
# the conformance echo worker (each task's output is its input; the input
# `fail` is an error). The task frame is `{"id":N,"input":"..."}` with its
# fields in that order, so the input's JSON text can be moved into the
# answer as it is, without decoding it. A real worker would decode it
# (jq -r .input) and encode its output (jq -Rs .).
printf '{"hello":"outlast","protocol":1}\n'
while IFS= read -r line; do
    id=${line#'{"id":'}
    id=${id%%,*}
    case $line in
        *'"input":"fail"}') printf '{"id":%s,"error":"asked to fail"}\n' "$id" ;;
        *) printf '{"id":%s,"output":%s\n' "$id" "${line#*\"input\":}" ;;
    esac
done
