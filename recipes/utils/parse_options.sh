#!/usr/bin/env bash
# Source this file (". utils/parse_options.sh") after setting default values of the options as shell
# variables; it turns every leading "--name value" (or "--name=value") argument into "name=value" for
# an EXISTING variable "name" (dashes in the option name become underscores: --stop-stage = --stop_stage)
# and leaves the remaining positional arguments in "$@".
#
#   stage=0; nj=4
#   . utils/parse_options.sh      # ./run.sh --stage 2 --nj 8 extra args
#
# Unknown options are an error (so a typo never silently keeps a default). Variables whose default is
# "true" or "false" only accept true/false. "--help" / "-h" prints the variables' current values when
# the sourcing script has set help_message (else a generic line) and exits 0. "--config FILE" sources
# FILE (lines "--name=value" or "name=value") before the remaining options.
# Written for sqcodec; follows the interface of Kaldi's utils/parse_options.sh.

__po_usage() {
  if [ -n "${help_message:-}" ]; then echo -e "${help_message}" 1>&2
  else echo "usage: $0 [--option value ...] (see the variables at the top of $0)" 1>&2; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) __po_usage; exit 0 ;;
    --) shift; break ;;
    --config|--config=*)
      if [ "$1" = "--config" ]; then __po_cfg="${2:-}"; shift 2 || { echo "$0: --config needs a file" 1>&2; exit 1; }
      else __po_cfg="${1#--config=}"; shift; fi
      [ -f "${__po_cfg}" ] || { echo "$0: --config ${__po_cfg}: no such file" 1>&2; exit 1; }
      while IFS= read -r __po_line || [ -n "${__po_line}" ]; do
        __po_line="${__po_line%%#*}"; __po_line="${__po_line#--}"
        [ -z "${__po_line// /}" ] && continue
        __po_n="${__po_line%%=*}"; __po_n="${__po_n//-/_}"
        eval "${__po_n}=\"\${__po_line#*=}\""
      done < "${__po_cfg}"
      ;;
    --*)
      __po_arg="${1#--}"
      if [[ "${__po_arg}" == *=* ]]; then
        __po_name="${__po_arg%%=*}"; __po_val="${__po_arg#*=}"; __po_n=1
      else
        __po_name="${__po_arg}"
        [ $# -ge 2 ] || { echo "$0: option --${__po_name} needs a value" 1>&2; exit 1; }
        __po_val="$2"; __po_n=2
      fi
      __po_name="${__po_name//-/_}"
      if ! [[ "${__po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "$0: invalid option --${__po_name}" 1>&2; exit 1
      fi
      if eval "[ -z \"\${${__po_name}+set}\" ]"; then
        echo "$0: unknown option --${__po_name//_/-} (no variable '${__po_name}')" 1>&2; __po_usage; exit 1
      fi
      eval "__po_old=\"\${${__po_name}}\""
      if [ "${__po_old}" = true ] || [ "${__po_old}" = false ]; then
        if [ "${__po_val}" != true ] && [ "${__po_val}" != false ]; then
          echo "$0: option --${__po_name} takes true or false, got '${__po_val}'" 1>&2; exit 1
        fi
      fi
      printf -v "${__po_name}" '%s' "${__po_val}"
      shift "${__po_n}"
      ;;
    *) break ;;
  esac
done
unset __po_arg __po_name __po_val __po_n __po_old __po_cfg __po_line
true
