# Sourced by the image scripts: the Debian mirror this machine's apt already uses, and nothing else.
#   debian_mirror SUITE [APT_DIR]   prints the URI, or says why there is none and returns 1
# APT_DIR (default /etc/apt) holds sources.list and sources.list.d/*.list (one-line format) and
# sources.list.d/*.sources (deb822). Only enabled binary ("deb") sources count, never a security
# archive. First choice: a source that lists SUITE itself; else one whose path ends in /debian.
debian_mirror() {
    local suite="$1" dir="${2:-/etc/apt}" files=() f uri
    [ -f "$dir/sources.list" ] && files+=("$dir/sources.list")
    for f in "$dir"/sources.list.d/*.list "$dir"/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    if [ "${#files[@]}" -gt 0 ]; then
        # One "URI SUITE..." line per enabled deb source, whichever the format.
        uri="$(awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "") {
                    n = split(uris, u, " ")
                    for (i = 1; i <= n; i++) print u[i], suites
                }
                types = ""; uris = ""; suites = ""; enabled = ""
            }
            FNR == 1 { flush() }
            /^[[:space:]]*#/ { next }
            FILENAME ~ /\.sources$/ {
                if ($0 ~ /^[[:space:]]*$/) { flush(); next }
                key = tolower($1); sub(/:$/, "", key)
                value = $0; sub(/^[^:]*:[[:space:]]*/, "", value)
                if (key == "types") types = value
                else if (key == "uris") uris = value
                else if (key == "suites") suites = value
                else if (key == "enabled") enabled = tolower(value)
                next
            }
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                print $i, $(i + 1)
            }
            END { flush() }
        ' "${files[@]}" | awk -v suite="$suite" '
            $1 ~ /-security\/?$/ { next }
            { for (i = 2; i <= NF; i++) if ($i == suite) { print $1; found = 1; exit } }
            !fallback && $1 ~ /\/debian\/?$/ { fallback = $1 }
            END { if (!found && fallback) print fallback }
        ')"
    fi
    if [ -z "${uri:-}" ]; then
        echo "no Debian mirror in $dir/sources.list or $dir/sources.list.d/*.list, *.sources (an enabled" \
            "'deb' source for $suite, or one whose path ends in /debian); add one to apt's sources" \
            "or name one with OCTOTUI_DEBIAN_MIRROR=URL" >&2
        return 1
    fi
    echo "$uri"
}
