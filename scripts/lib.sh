# Shell helpers shared by the scripts in this folder; sourced, not run.

# Waits (up to 60 s) for a line starting with $2 in file $1 and prints its remainder.
first_line_after() {
    local file=$1 prefix=$2
    for _ in $(seq 1 600); do
        local line
        line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then
            echo "${line#"$prefix"}"
            return 0
        fi
        sleep 0.1
    done
    echo "no '$prefix' line in $file within 60 s:" >&2
    cat "$file" "$file.err" >&2 || true
    return 1
}
