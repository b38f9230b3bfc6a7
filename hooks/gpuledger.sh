# shellcheck shell=bash
# gpuledger: the SSH users' side. Login banner, one-line warnings and refusals before GPU jobs.
# Installed as /etc/profile.d/gpuledger.sh and sourced again from /etc/bash.bashrc; gpuledger-balance
# sources it as a library. Reads only the status file of docs/status-file.md; see docs/hook-admin.md.
#
# It runs inside users' own shells, so it must never break one: it stays POSIX-parseable until the bash
# check (dash sources /etc/profile.d too), keeps every variable local, makes shell options local to each
# function (`local -`), sets no traps, exports nothing, and prints nothing unless the shell is interactive.

[ -n "${BASH_VERSION-}" ] || return 0
# Root is untouched; `local -` and ${x@P} need bash 4.4; bash in POSIX mode is someone's sh.
if ((EUID == 0 || BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404)) || shopt -oq posix \
    || [[ ${_gpuledger_loaded-} == "$$" || ($- != *i* && ${_gpuledger_as_library-} != 1) ]]; then
    return 0
fi
# $$ rather than a flag: a child shell that inherits an exported copy still loads the hook.
_gpuledger_loaded=$$

_gpuledger_config() {
    # Set by roles/gpuledger_node at install (one line each); never taken from the environment, so a
    # user cannot point the hook at a file they wrote.
    __gl_status_dir=/run/gpuledger/status
    __gl_wrapped_commands='python python3 torchrun accelerate deepspeed jupyter jupyter-lab jupyter-notebook ipython'
    __gl_exempt_users=''
    # gpuledger-balance --web: the console's address (empty: none to print) and the code spool (docs/web-login.md).
    __gl_console_url=''
    __gl_web_login_dir=/var/spool/gpuledger/web-login
}

# Every variable the hook names starts with __gl_: it runs in users' shells, where a `readonly mode` or
# `declare -i name` of theirs would otherwise make our `local mode` fail and abort the command line.

# Runs "$@" with the caller's status fields as locals (dynamic scope): __gl_problem (missing, unsafe,
# corrupt, stale or empty when usable) and one __gl_KEY variable per key of the status file.
_gpuledger_with_status() {
    local -
    # -f: the hook splits words (stat's output, the configured lists) and never means to glob.
    set +aeEuxT -f
    local IFS=$' \t\n' __gl_status_dir __gl_wrapped_commands __gl_exempt_users __gl_console_url __gl_web_login_dir \
        __gl_problem='' __gl_version='' \
        __gl_user='' __gl_uid='' __gl_billing_user='' __gl_updated_at='' __gl_tier='' __gl_balance='' \
        __gl_currency='' __gl_burn_rate_per_hour='' __gl_time_to_empty_hours='' __gl_gpu_blocked='' \
        __gl_cpu_quota_percent='' __gl_kill_at='' __gl_notice='' __gl_recharge_hint=''
    _gpuledger_config
    _gpuledger_read
    "$@" || return
}

_gpuledger_read() {
    local __gl_file=$__gl_status_dir/$UID.status __gl_path=$__gl_status_dir __gl_line __gl_key __gl_value __gl_now
    local -a __gl_paths=()
    [[ $__gl_status_dir == /* ]] || { __gl_problem=unsafe; return; }
    while [[ -n $__gl_path ]]; do
        __gl_paths=("$__gl_path" "${__gl_paths[@]}")
        __gl_path=${__gl_path%/*}
    done
    # Owner and mode of every directory down to the file, in one fork: bash has no builtin for
    # either. An absolute path, since PATH is the user's.
    # No here-string: before bash 5.1 it is a temporary file in the user's TMPDIR.
    # shellcheck disable=SC2207
    local -a __gl_facts=($(LC_ALL=C /usr/bin/stat -c '%u %f' -- / "${__gl_paths[@]}" "$__gl_file" 2>/dev/null))
    if ((${#__gl_facts[@]} != 2 * (${#__gl_paths[@]} + 2))); then
        __gl_problem=missing
        return
    fi
    local __gl_i __gl_mode __gl_want=040000
    for ((__gl_i = 0; __gl_i < ${#__gl_facts[@]}; __gl_i += 2)); do
        ((__gl_i == ${#__gl_facts[@]} - 2)) && __gl_want=0100000
        __gl_mode=$((16#${__gl_facts[__gl_i + 1]}))
        if [[ ${__gl_facts[__gl_i]} != 0 ]] || ((__gl_mode & 022 || (__gl_mode & 0170000) != __gl_want)); then
            __gl_problem=unsafe
            return
        fi
    done
    while IFS= read -r __gl_line || [[ -n $__gl_line ]]; do
        [[ $__gl_line == *=* ]] || continue
        __gl_key=${__gl_line%%=*}
        __gl_value=${__gl_line#*=}
        case $__gl_key in
        version | user | uid | billing_user | updated_at | tier | balance | currency | burn_rate_per_hour | \
            time_to_empty_hours | gpu_blocked | cpu_quota_percent | kill_at | notice | recharge_hint)
            # The terminal gets these strings: no escape sequence may come through.
            printf -v "__gl_$__gl_key" '%s' "${__gl_value//[[:cntrl:]]/}"
            ;;
        esac
    done 2>/dev/null <"$__gl_file"
    # Extended patterns, not =~, which would overwrite the user's BASH_REMATCH. Integers stay within
    # 15 digits because bash arithmetic uses them; optional fields are checked as "0" when empty.
    local __gl_field
    for __gl_field in "$__gl_updated_at" "${__gl_kill_at:-0}"; do
        [[ $__gl_field == +([0-9]) && ${#__gl_field} -le 15 ]] || { __gl_problem=corrupt; return; }
    done
    for __gl_field in "$__gl_balance" "${__gl_burn_rate_per_hour:-0}" "${__gl_time_to_empty_hours:-0}" \
        "${__gl_cpu_quota_percent:-0}"; do
        [[ $__gl_field == ?(-)+([0-9])?(.+([0-9])) ]] || { __gl_problem=corrupt; return; }
    done
    if [[ $__gl_version != 1 || $__gl_uid != "$UID" || $__gl_currency != [A-Z][A-Z][A-Z] ||
        $__gl_gpu_blocked != @(|0|1) ]]; then
        __gl_problem=corrupt
        return
    fi
    case $__gl_tier in normal | warning | limited | blocked | exempt) ;; *)
        __gl_problem=corrupt
        return
        ;;
    esac
    # Beyond 300 s either way is stale: a clock far ahead must not keep an old verdict alive.
    printf -v __gl_now '%(%s)T' -1
    if ((__gl_now - 10#$__gl_updated_at > 300 || 10#$__gl_updated_at - __gl_now > 300)); then
        __gl_problem=stale
    fi
}

# Sets the variable named $1 to the exact decimal $2 shown with at least $3 decimals: trailing zeros go,
# no digit is ever rounded away.
_gpuledger_decimal() {
    local __gl_whole=${2%%.*} __gl_fraction=
    [[ $2 == *.* ]] && __gl_fraction=${2#*.}
    while ((${#__gl_fraction} > $3)) && [[ $__gl_fraction == *0 ]]; do __gl_fraction=${__gl_fraction%0}; done
    while ((${#__gl_fraction} < $3)); do __gl_fraction+=0; done
    printf -v "$1" '%s' "$__gl_whole${__gl_fraction:+.$__gl_fraction}"
}

_gpuledger_problem_line() {
    case $__gl_problem in
    missing) printf 'gpuledger: no usage status for you on this node yet; GPU jobs are not checked.\n' ;;
    unsafe) printf 'gpuledger: the usage status file is not root-owned and protected; ignored. Please tell an admin.\n' ;;
    corrupt) printf 'gpuledger: the usage status file is unreadable; ignored. Please tell an admin.\n' ;;
    stale) printf 'gpuledger: usage status is out of date (controller not reporting); GPU jobs are not checked.\n' ;;
    esac
}

# The full standing, for the login banner and gpuledger-balance.
_gpuledger_detail() {
    local __gl_shown __gl_rate __gl_left __gl_when
    _gpuledger_decimal __gl_shown "$__gl_balance" 2
    printf 'gpuledger: balance %s %s' "$__gl_shown" "$__gl_currency"
    [[ -n $__gl_billing_user && $__gl_billing_user != "$__gl_user" ]] && printf ' (charged to %s)' "$__gl_billing_user"
    printf ', tier %s\n' "$__gl_tier"
    if [[ -n $__gl_burn_rate_per_hour ]]; then
        _gpuledger_decimal __gl_rate "$__gl_burn_rate_per_hour" 2
        printf '  spending %s %s/hour over the last hour' "$__gl_rate" "$__gl_currency"
        if [[ -n $__gl_time_to_empty_hours ]]; then
            _gpuledger_decimal __gl_left "$__gl_time_to_empty_hours" 1
            printf '; about %s hours until GPU access is blocked' "$__gl_left"
        fi
        printf '\n'
    fi
    case $__gl_tier in
    warning) printf '  Your balance is running low.\n' ;;
    limited) printf '  New GPU jobs are refused in this shell until you recharge.\n' ;;
    blocked) printf '  Your balance is used up.\n' ;;
    esac
    [[ $__gl_gpu_blocked == 1 ]] && printf '  GPU access is blocked on this node: new processes cannot open a GPU.\n'
    [[ -n $__gl_cpu_quota_percent ]] &&
        printf "  Your CPU use is limited to %s%% of this node's CPUs.\n" "$__gl_cpu_quota_percent"
    if [[ -n $__gl_kill_at ]]; then
        printf -v __gl_when '%(%Y-%m-%d %H:%M %Z)T' "$((10#$__gl_kill_at))"
        printf '  Your GPU processes will be stopped at %s: save your work now.\n' "$__gl_when"
    fi
    [[ -n $__gl_notice ]] && printf '  Notice: %s\n' "$__gl_notice"
    _gpuledger_queue_line
    if [[ $__gl_tier != normal && $__gl_tier != exempt && -n $__gl_recharge_hint ]]; then
        printf '  To recharge: %s\n' "$__gl_recharge_hint"
    fi
    return 0
}

# One line about the user's GPU-queue request from <uid>.queue (docs/gpu-request.md), when one is active and
# the answer is fresh. Called only with a usable status file, so its directories are already known to be safe;
# the file itself must be root's, a regular file and not writable by others. No file: no fork, no line.
_gpuledger_queue_line() {
    local __gl_file=$__gl_status_dir/$UID.queue __gl_line __gl_now __gl_q_uid='' __gl_q_at='' __gl_q_active='' \
        __gl_q_summary=''
    [[ -f $__gl_file ]] || return 0
    # shellcheck disable=SC2207
    local -a __gl_facts=($(LC_ALL=C /usr/bin/stat -c '%u %f' -- "$__gl_file" 2>/dev/null))
    [[ ${__gl_facts[0]-} == 0 ]] && (((16#${__gl_facts[1]:-0} & 0170022) == 0100000)) || return 0
    while IFS= read -r __gl_line || [[ -n $__gl_line ]]; do
        case $__gl_line in
        uid=*) __gl_q_uid=${__gl_line#*=} ;;
        updated_at=*) __gl_q_at=${__gl_line#*=} ;;
        active=*) __gl_q_active=${__gl_line#*=} ;;
        summary=*) __gl_q_summary=${__gl_line#*=} ;;
        esac
    done 2>/dev/null <"$__gl_file"
    [[ $__gl_q_uid == "$UID" && $__gl_q_at == +([0-9]) && ${#__gl_q_at} -le 15 && $__gl_q_active == +([1-9])*([0-9]) &&
        -n $__gl_q_summary ]] || return 0
    # As gpu-request --status: an answer older than 600 s is not shown as current.
    printf -v __gl_now '%(%s)T' -1
    ((__gl_now - 10#$__gl_q_at <= 600 && 10#$__gl_q_at - __gl_now <= 600)) || return 0
    printf '  GPU queue: %s (gpu-request --status)\n' "${__gl_q_summary//[[:cntrl:]]/}"
}

# Decides whether the GPU command $1 may start (status 0) or is refused (status 1), saying why on stderr.
_gpuledger_admit() {
    local __gl_shown __gl_left=
    if [[ -n $__gl_problem ]]; then
        _gpuledger_problem_line >&2
        return 0
    fi
    _gpuledger_decimal __gl_shown "$__gl_balance" 2
    case $__gl_tier in
    warning)
        [[ -n $__gl_time_to_empty_hours ]] && _gpuledger_decimal __gl_left "$__gl_time_to_empty_hours" 1
        printf 'gpuledger: low balance, %s %s left%s. %s\n' "$__gl_shown" "$__gl_currency" \
            "${__gl_left:+ (about $__gl_left hours at the current rate)}" \
            "${__gl_recharge_hint:-Run gpuledger-balance.}" >&2
        ;;
    limited | blocked)
        printf 'gpuledger: %s not started: balance %s %s, tier %s; new GPU jobs are refused until you recharge.\n' \
            "$1" "$__gl_shown" "$__gl_currency" "$__gl_tier" >&2
        printf 'gpuledger: %s Details: gpuledger-balance\n' "${__gl_recharge_hint:-Ask an admin to recharge.}" >&2
        return 1
        ;;
    esac
    return 0
}

# Body of every wrapper: $1 is the caller's `$-`, then the command. A refusal has status 126 ("cannot
# execute"), except in a shell with errexit on, where any failing status would end the user's session:
# there the refusal, already said on stderr, returns 0. Otherwise the real command runs unchanged.
_gpuledger_gate() {
    local __gl_options=$1
    shift
    if ! _gpuledger_with_status _gpuledger_admit "$1"; then
        [[ $__gl_options == *e* ]] && return 0
        return 126
    fi
    command "$@"
}

_gpuledger_exempt_by_config() {
    # \u is bash's own getpwuid() name: unlike $USER, the environment cannot change it.
    local __gl_me='\u' __gl_name
    __gl_me=${__gl_me@P}
    for __gl_name in $__gl_exempt_users; do
        [[ $__gl_name == "$__gl_me" ]] && return 0
    done
    return 1
}

# Status 1: the user is exempt and must be left untouched.
_gpuledger_on_login() {
    local __gl_name
    if _gpuledger_exempt_by_config || [[ -z $__gl_problem && $__gl_tier == exempt ]]; then
        return 1
    fi
    for __gl_name in $__gl_wrapped_commands; do
        # Names come from the root-owned configuration; checked anyway, since eval is the only way to
        # define a function whose name is data. `function` keeps a user alias from renaming it.
        [[ $__gl_name == [A-Za-z_]*([A-Za-z0-9_.+-]) ]] || continue
        # The caller's $- is taken in the same command as `local -`, before `set +e` changes it.
        # `|| return` keeps an ERR trap from firing inside the wrapper as well as at the caller.
        eval "function $__gl_name { local - __gl_caller=\$-; set +aeEuxT;" \
            "_gpuledger_gate \"\$__gl_caller\" $__gl_name \"\$@\" || return; }"
    done
    if shopt -q login_shell; then
        if [[ -n $__gl_problem ]]; then _gpuledger_problem_line >&2; else _gpuledger_detail >&2; fi
    fi
    return 0
}

# What gpuledger-balance prints; status 0 when the standing is known, 1 otherwise.
_gpuledger_balance() {
    if _gpuledger_exempt_by_config; then
        printf 'gpuledger: you are exempt from metering on this node.\n'
    elif [[ -n $__gl_problem ]]; then
        _gpuledger_problem_line >&2
        return 1
    else
        _gpuledger_detail
    fi
}

if [[ ${_gpuledger_as_library-} != 1 ]] && ! _gpuledger_with_status _gpuledger_on_login; then
    # Exempt users keep only the guard, so that a second sourcing does not read the status again.
    unset -f _gpuledger_config _gpuledger_with_status _gpuledger_read _gpuledger_decimal _gpuledger_problem_line \
        _gpuledger_detail _gpuledger_queue_line _gpuledger_admit _gpuledger_gate _gpuledger_exempt_by_config _gpuledger_on_login \
        _gpuledger_balance
fi
