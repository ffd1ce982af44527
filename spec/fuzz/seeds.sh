#!/bin/sh
# Writes the fuzz targets' seed corpora from the fixtures and JSONTestSuite into OUT
# (a build folder; nothing here is committed). Each seed is one variant byte, then the input:
# the targets read byte % 24 (parse), % 4 (decode) or % 8 (verify) as the options to use, and
# byte 72 ('H') is variant 0 of all three, so the seeds stay printable.
# Usage: spec/fuzz/seeds.sh FIXTURES OUT      (FIXTURES: the repository's spec/fixtures)
set -eu
fixtures=$1 out=$2
suite=$fixtures/JSONTestSuite/test_parsing
rm -rf "$out"
mkdir -p "$out/parse" "$out/decode" "$out/verify"

variant() { # the printable byte that selects variant $1
  printf "\\$(printf '%03o' $((72 + $1)))"
}

i=0
for file in "$fixtures"/*/*.json; do
  name=$(basename "$(dirname "$file")")_$(basename "$file" .json)
  v=0
  while [ $v -lt 24 ]; do # every option set on every fixture
    { variant $v; cat "$file"; } > "$out/parse/$name.$v"
    v=$((v + 1))
  done
  { variant $((i % 4)); cat "$file"; } > "$out/decode/$name"
  i=$((i + 1))
done
for file in "$suite"/*.json; do
  name=$(basename "$file" .json)
  { variant $((i % 24)); cat "$file"; } > "$out/parse/$name"
  { variant $((i % 4)); cat "$file"; } > "$out/decode/$name"
  i=$((i + 1))
done

# verify: a header line (SIG stands for the right v1), then a body
n=0
for header in 't=1700000000,v1=SIG' 't=1700000000, v1=SIG, v0=abc' 'v1=SIG,t=1700000000' \
    't=1700000000,v1=0000000000000000000000000000000000000000000000000000000000000000,v1=SIG' \
    't=1,v1=SIG' 't=1700000000' 'v1=SIG' 't=1700000000,t=1700000000,v1=SIG' ' , ,' \
    't=17000000000000000000000,v1=SIG' 't=1700000000,v1=SIGSIG' 't=01700000000,v1=SIG'; do
  for file in "$fixtures"/valid/*.json "$fixtures"/lenient/drift.json; do
    { variant $((n % 8)); printf '%s\n' "$header"; cat "$file"; } > "$out/verify/seed$n"
    n=$((n + 1))
  done
done
{ variant 0; printf '\n'; } > "$out/verify/empty"
{ variant 1; printf 't=1700000000,v1=SIG'; } > "$out/verify/no-newline"
