# Recipe environment: the shared one (a corpus that needs more, e.g. extra tools on PATH, adds it here).
. "$(dirname "${BASH_SOURCE[0]}")/../../recipes/path.sh"
