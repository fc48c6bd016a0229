# Argument helpers shared by the reproduce_*.sh scripts (sourced, not run).
die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
# values of a list option: the words up to the next option, in LIST
take_list() {
  local name=$1; shift
  LIST=()
  while [ $# -gt 0 ] && [[ "$1" != -* ]]; do LIST+=("$1"); shift; done
  [ ${#LIST[@]} -gt 0 ] || die "$name needs at least one value"
}
need_value() { [ $# -ge 2 ] && [[ "$2" != --* ]] || die "$1 needs a value"; }
