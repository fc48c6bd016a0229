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

# Steps: run (echoed), printed (--dry-run), or, with --launcher, written into the current job of a plan
# that `python3 -m ood.runtime.launch` submits (ood/runtime/launch.py): one job per `job NAME`, the last one "aggregate".
LAUNCHER=""
LAUNCH_ARGS=()
PLAN=""
IN_JOB=0
show() { local line; printf -v line '%q ' "$@"; echo "${line% }"; }
step() {
  if [ "$IN_JOB" = 1 ]; then show "$@" >> "$PLAN"; return; fi
  if [ "$DRY" = 1 ]; then show "$@"; return; fi
  echo "+ $(show "$@")"
  "$@"
}
# the launcher's options, for the scripts' option loops: kept (and true) when $1 is one of them, which
# then take two words
launch_option() {
  case "$1" in
    --launcher) need_value "$@"; [[ "$2" =~ ^(slurm|local)$ ]] || die "--launcher: slurm or local, not '$2'"
                LAUNCHER=$2 ;;
    --partition|--account|--gpus|--cpus|--time|--retries) need_value "$@"; LAUNCH_ARGS+=("$1" "$2") ;;
    *) return 1 ;;
  esac
}
# before any step: the launcher can submit from this machine (python3 -m ood.runtime.launch --check: one line and
# exit status 2 if not, e.g. --launcher slurm where there is no SLURM)
launcher_ready() {
  [ -n "$LAUNCHER" ] && [ "$DRY" != 1 ] || return 0
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m ood.runtime.launch --launcher "$LAUNCHER" --check || exit $?
}
start_plan() {  # $1: the jobs folder (submitit's logs, each job's markers of finished steps)
  [ -n "$LAUNCHER" ] || return 0
  JOBS_DIR=$1
  if [ "$DRY" = 1 ]; then PLAN=$(mktemp); else mkdir -p "$JOBS_DIR"; PLAN="$JOBS_DIR/.plan.txt.tmp"; fi
  printf '# cwd %s\n' "$(pwd)" > "$PLAN"  # the jobs run where the script was started, as its paths assume
}
job() { [ -z "$PLAN" ] || { echo "# job $1" >> "$PLAN"; IN_JOB=1; }; }
launch() {
  [ -n "$PLAN" ] || return 0
  local dry=() plan="$PLAN"
  if [ "$DRY" = 1 ]; then dry=(--dry_run); else plan="$JOBS_DIR/plan.txt"; mv "$PLAN" "$plan"; fi
  local status=0
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m ood.runtime.launch "$plan" --launcher "$LAUNCHER" \
    --jobs_dir "$JOBS_DIR" "${LAUNCH_ARGS[@]}" "${dry[@]}" || status=$?
  [ "$DRY" != 1 ] || rm -f "$plan"  # a dry run's plan was a temporary file
  return "$status"
}
