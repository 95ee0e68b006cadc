#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Usage: scripts/check-docs.sh TOP LIBSO
# Every scif_* symbol that LIBSO defines and exports must have
#   (a) a man page TOP/docs/man/<symbol>.3, and
#   (b) a Doxygen block in TOP/include/scif.h: the comment that ends on the line just above the
#       line declaring the symbol opens with "/**" (or "/*!") and contains a @brief (or \brief).
# Prints what is missing and exits 1 if anything is; exits 2 on a usage or tool error.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 TOP LIBSO" >&2
	exit 2
fi
top=$1
lib=$2
header=$top/include/scif.h
mandir=$top/docs/man

for f in "$lib" "$header"; do
	if [ ! -r "$f" ]; then
		echo "check-docs: cannot read $f" >&2
		exit 2
	fi
done
if ! command -v readelf >/dev/null 2>&1; then
	echo "check-docs: readelf not found (binutils)" >&2
	exit 2
fi

# Defined (Ndx not UND), exported scif_* symbols, without their @VERSION / @@VERSION suffix.
# readelf --dyn-syms -W columns: Num: Value Size Type Bind Vis Ndx Name
dynsyms=$(readelf --dyn-syms -W "$lib") || {
	echo "check-docs: readelf failed on $lib" >&2
	exit 2
}
syms=$(awk '$1 ~ /^[0-9]+:$/ && NF >= 8 && $7 != "UND" && $5 != "LOCAL" {
		name = $8; sub(/@.*/, "", name)
		if (name ~ /^scif_/) print name
	}' <<<"$dynsyms" | sort -u)
if [ -z "$syms" ]; then
	echo "check-docs: $lib exports no scif_* symbol" >&2
	exit 1
fi

# Report for one symbol whether scif.h documents it: prints "ok", "undeclared", "no-comment",
# "not-doxygen" or "no-brief". Comments are stripped before looking for the declaration, so a
# mention such as "scif_send()" inside a comment is not taken for one.
doxygen_status() {
	awk -v sym="$1" '
	{ line[NR] = $0 }
	END {
		inc = 0
		for (i = 1; i <= NR; i++) {
			s = line[i]; code = ""
			while (s != "") {
				if (inc) {
					p = index(s, "*/")
					if (!p) { s = ""; break }
					s = substr(s, p + 2); inc = 0
				} else {
					p = index(s, "/*"); q = index(s, "//")
					if (q && (!p || q < p)) { code = code substr(s, 1, q - 1); s = ""; break }
					if (!p) { code = code s; s = ""; break }
					code = code substr(s, 1, p - 1); s = substr(s, p + 2); inc = 1
				}
			}
			if (code ~ ("(^|[^A-Za-z0-9_])" sym "[ \t]*\\(")) { decl = i; break }
		}
		if (!decl) { print "undeclared"; exit }
		end = decl - 1
		if (end < 1 || line[end] !~ /\*\/[ \t]*$/) { print "no-comment"; exit }
		for (j = end; j >= 1; j--) {
			if (j < end && line[j] ~ /\*\//) { print "no-comment"; exit }
			if (line[j] ~ /\/\*/) break
		}
		if (j < 1) { print "no-comment"; exit }
		if (line[j] !~ /\/\*[*!]/) { print "not-doxygen"; exit }
		for (k = j; k <= end; k++)
			if (line[k] ~ /[@\\]brief[ \t]/) { print "ok"; exit }
		print "no-brief"
	}' "$header"
}

missing=0
count=0
for sym in $syms; do
	count=$((count + 1))
	if [ ! -s "$mandir/$sym.3" ]; then
		echo "MISSING man page: docs/man/$sym.3"
		missing=$((missing + 1))
	fi
	st=$(doxygen_status "$sym")
	case $st in
	ok) ;;
	undeclared) echo "MISSING declaration of $sym in include/scif.h"; missing=$((missing + 1)) ;;
	no-comment) echo "MISSING Doxygen block just above $sym in include/scif.h"; missing=$((missing + 1)) ;;
	not-doxygen) echo "MISSING Doxygen block above $sym (plain comment, not /** or /*!)"; missing=$((missing + 1)) ;;
	no-brief) echo "MISSING @brief in the Doxygen block of $sym"; missing=$((missing + 1)) ;;
	esac
done

if [ "$missing" -ne 0 ]; then
	echo "check-docs: $missing missing item(s) for $count exported symbol(s)"
	exit 1
fi
echo "check-docs: all $count exported scif_* symbols have a man page and a Doxygen @brief"
