#!/bin/sh
# Builds the release binary and splits its debug info into a file beside it:
#   target/dist/countersign        ~36 MiB, function names in backtraces
#   target/dist/countersign.debug  ~36 MiB, zlib-compressed line tables
# With countersign.debug in the same folder (the binary names it in a
# .gnu_debuglink section), a panic's RUST_BACKTRACE=1 backtrace shows
# function names with file:line; ship both files, or only the binary when
# names alone will do. target/release/countersign is left as cargo built
# it. Needs binutils (objcopy).
set -eu
cargo build --release -p countersign "$@"
mkdir -p target/dist
cp target/release/countersign target/dist/countersign.full
cd target/dist
objcopy --only-keep-debug --compress-debug-sections=zlib countersign.full countersign.debug
objcopy --strip-debug --add-gnu-debuglink=countersign.debug countersign.full countersign
rm countersign.full
ls -l countersign countersign.debug
