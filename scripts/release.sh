#!/bin/sh
# Builds the release binary and splits its debug info into a file beside it:
#   target/release/countersign        ~36 MiB, function names in backtraces
#   target/release/countersign.debug  ~36 MiB, zlib-compressed line tables
# With countersign.debug in the same folder (the binary names it in a
# .gnu_debuglink section), a panic's RUST_BACKTRACE=1 backtrace shows
# function names with file:line; ship both files, or only the binary when
# names alone will do. Needs binutils (objcopy).
set -eu
cargo build --release -p countersign "$@"
cd target/release
objcopy --only-keep-debug --compress-debug-sections=zlib countersign countersign.debug
objcopy --strip-debug --add-gnu-debuglink=countersign.debug countersign
ls -l countersign countersign.debug
