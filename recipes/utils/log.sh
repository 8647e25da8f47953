# Sourced first by recipes/codec.sh and recipes/image.sh: timestamped log lines naming the calling
# script and line, and die (log to stderr, exit 1).
log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }
die() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) ERROR: $*" 1>&2; exit 1; }
