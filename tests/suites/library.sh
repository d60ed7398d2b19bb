#!/usr/bin/env bash
# Suite "library": libimcap.so exports exactly the API of include/imcap.h (all imcap_*), has its
# SONAME; the header compiles as C99 and C++; `make install` into a DESTDIR, a program built with
# `pkg-config --cflags --libs imcap` against the INSTALLED copy (shared and static) captions photos as
# the CLI does, the installed CLI finds the installed model; `make uninstall` removes everything.
set -u
cd "$(dirname "$0")/../.."
pass=0 fail=0 skip=0
ok() { echo "ok   library: $1"; pass=$((pass+1)); }
bad() { echo "FAIL library: $1"; fail=$((fail+1)); }
sk() { echo "skip library: $1"; skip=$((skip+1)); }
tmp=$(mktemp -d /tmp/imcap-lib.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
lib=build/libimcap.so
ver=$(sed -nE 's/^#define IMCAP_VERSION_STRING "([^"]+)"/\1/p' include/imcap.h)
major=${ver%%.*}

# 1. Exported symbols: every defined dynamic symbol is imcap_* (the version node aside), and is a
#    function or variable declared in imcap.h; every function imcap.h declares is exported.
nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u > "$tmp/exported"
grep -v '^imcap_' "$tmp/exported" > "$tmp/foreign"
if [ -s "$tmp/exported" ] && [ ! -s "$tmp/foreign" ]; then ok "only imcap_* symbols exported ($(wc -l < "$tmp/exported"))"
else bad "symbols other than imcap_* exported: $(tr '\n' ' ' < "$tmp/foreign")"; fi
# Declared functions: identifiers imcap_x directly followed by '(' outside comments.
gcc -fpreprocessed -dD -E -P include/imcap.h 2>/dev/null | grep -oP '\bimcap_[a-z0-9_]+\s*\((?!\s*\*)' |
  sed -E 's/[[:space:]]*\($//' | sort -u > "$tmp/declared"
comm -13 "$tmp/declared" "$tmp/exported" > "$tmp/undeclared"
comm -23 "$tmp/declared" "$tmp/exported" > "$tmp/missing"
if [ -s "$tmp/declared" ] && [ ! -s "$tmp/undeclared" ]; then ok "no internal helper exported"
else bad "exported but not in imcap.h: $(tr '\n' ' ' < "$tmp/undeclared")"; fi
if [ ! -s "$tmp/missing" ]; then ok "every function of imcap.h exported ($(wc -l < "$tmp/declared"))"
else bad "declared in imcap.h but not exported: $(tr '\n' ' ' < "$tmp/missing")"; fi
soname=$(readelf -d "$lib" | sed -nE 's/.*SONAME.*\[(.*)\].*/\1/p')
if [ "$soname" = "libimcap.so.$major" ] && [ "$(readlink "$lib")" = "libimcap.so.$ver" ]; then
  ok "SONAME $soname, file libimcap.so.$ver"
else bad "SONAME '$soname' / link '$(readlink "$lib")' (want libimcap.so.$major, libimcap.so.$ver)"; fi

# 2. The header alone compiles as C99 and as C++ (pedantic, warnings are errors).
printf '#include "imcap.h"\nint main(void) { return imcap_version()[0] == 0; }\n' > "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
if gcc -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -c "$tmp/h.c" -o "$tmp/h99.o" 2> "$tmp/err"; then ok "imcap.h compiles as C99"
else bad "imcap.h as C99: $(cat "$tmp/err")"; fi
if g++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude -c "$tmp/h.cpp" -o "$tmp/hxx.o" 2> "$tmp/err" &&
   g++ "$tmp/hxx.o" -Lbuild -limcap -Wl,-rpath,"$PWD/build" -o "$tmp/hxx" && "$tmp/hxx"; then
  ok "imcap.h compiles as C++ and links against libimcap.so"
else bad "imcap.h as C++: $(cat "$tmp/err")"; fi

# 3. make install into a DESTDIR; a program built against the installed copy captions photos.
root=$tmp/root prefix=/opt/imcap
photos="data/images/owl.jpg data/images/parrot.jpg"
if make -s install PREFIX=$prefix DESTDIR="$root" > "$tmp/install.log" 2>&1; then ok "make install PREFIX=$prefix DESTDIR=..."
else bad "make install: $(tail -5 "$tmp/install.log")"; fi
inst=$root$prefix
for f in lib/libimcap.so.$ver lib/libimcap.so.$major lib/libimcap.so lib/libimcap.a include/imcap.h \
         lib/pkgconfig/imcap.pc bin/imcap share/imcap/models/default.imcap; do
  [ -e "$inst/$f" ] || bad "not installed: $f"
done
have_enc=0; ls models/encoders/*.gguf >/dev/null 2>&1 && have_enc=1
if [ $have_enc = 1 ] && [ ! -s models/default.imcap ]; then have_enc=0; fi
export PKG_CONFIG_PATH=$inst/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
cflags=$(pkg-config --cflags imcap) libs=$(pkg-config --libs imcap)
case "$cflags $libs" in
  *"$inst/include"*"$inst/lib"*) ok "pkg-config --cflags --libs imcap: $cflags $libs" ;;
  *) bad "pkg-config gives '$cflags $libs'" ;;
esac
[ "$(pkg-config --modversion imcap)" = "$ver" ] || bad "pkg-config version $(pkg-config --modversion imcap) != $ver"
mkdir -p "$tmp/run"
if gcc -std=c99 -Wall -Wextra -Werror examples/caption.c $cflags $libs -Wl,-rpath,"$inst/lib" -o "$tmp/run/caption_so" 2> "$tmp/err" &&
   gcc -std=c99 -Wall -Wextra -Werror examples/caption.c $cflags $(pkg-config --static --libs imcap | sed 's/-limcap/-l:libimcap.a/') \
       -o "$inst/bin/caption_a" 2>> "$tmp/err"; then
  ok "examples/caption.c builds against the installed library (shared and static)"
else bad "building examples/caption.c: $(cat "$tmp/err")"; fi
if ldd "$tmp/run/caption_so" | grep -q "$inst/lib/libimcap.so.$major"; then ok "the program loads the installed libimcap.so.$major"
else bad "ldd: $(ldd "$tmp/run/caption_so" | grep imcap)"; fi
if [ $have_enc = 1 ]; then
  ./build/imcap caption $photos > "$tmp/cli.txt" 2> "$tmp/err" || bad "build/imcap caption: $(cat "$tmp/err")"
  abs=""; for p in $photos; do abs="$abs $PWD/$p"; done
  # From a folder with no models/: the installed model and encoders must be found beside the library
  # (the static program, installed into the prefix's bin/, finds them beside itself).
  for v in so a; do
    prog=$tmp/run/caption_so; [ $v = a ] && prog=$inst/bin/caption_a
    if (cd "$tmp/run" && env -u IMCAP_MODEL "$prog" $abs > out_$v.txt 2> err_$v.txt); then
      head -1 "$tmp/run/out_$v.txt" | grep -q "model $inst/share/imcap/models/default.imcap, encoder $inst/share/imcap/models/encoders/" ||
        bad "$v: not the installed model/encoder: $(head -1 "$tmp/run/out_$v.txt")"
      if diff <(tail -n +2 "$tmp/run/out_$v.txt" | cut -f2) <(cut -f2 "$tmp/cli.txt") > "$tmp/diff"; then
        ok "installed library ($v) captions the photos as the CLI: $(head -1 "$tmp/cli.txt" | cut -f2)"
      else bad "$v: captions differ from the CLI: $(cat "$tmp/diff")"; fi
    else bad "$v: caption program failed: $(cat "$tmp/run/err_$v.txt")"; fi
  done
  if (cd "$tmp/run" && env -u IMCAP_MODEL "$inst/bin/imcap" caption $abs > cli_inst.txt 2> err.txt) &&
     diff <(cut -f2 "$tmp/run/cli_inst.txt") <(cut -f2 "$tmp/cli.txt") > /dev/null; then
    ok "installed CLI finds the installed model and captions as build/imcap"
  else bad "installed CLI: $(cat "$tmp/run/err.txt")"; fi
else
  sk "captioning through the installed copy: no converted encoders or default model (run ./setup.sh)"
fi

# 4. make uninstall leaves nothing behind (but the test's own program).
rm -f "$inst/bin/caption_a"
make -s uninstall PREFIX=$prefix DESTDIR="$root" > "$tmp/un.log" 2>&1 || bad "make uninstall: $(tail -3 "$tmp/un.log")"
left=$(find "$inst" -type f -o -type l 2>/dev/null)
if [ -z "$left" ]; then ok "make uninstall removes every installed file"
else bad "left after uninstall: $left"; fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
