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
    status_dir=/run/gpuledger/status
    wrapped_commands='python python3 torchrun accelerate deepspeed jupyter jupyter-lab jupyter-notebook ipython'
    exempt_users=''
}

# Runs "$@" with the caller's status fields as locals (dynamic scope): problem (missing, unsafe, corrupt,
# stale or empty when usable) and one variable per key of the status file.
_gpuledger_with_status() {
    local -
    # -f: the hook splits words (stat's output, the configured lists) and never means to glob.
    set +aeEuxT -f
    local IFS=$' \t\n' status_dir wrapped_commands exempt_users problem='' version='' user='' uid='' \
        billing_user='' updated_at='' tier='' balance='' currency='' burn_rate_per_hour='' \
        time_to_empty_hours='' gpu_blocked='' cpu_quota_percent='' kill_at='' notice='' recharge_hint=''
    _gpuledger_config
    _gpuledger_read
    "$@" || return
}

_gpuledger_read() {
    local file=$status_dir/$UID.status path=$status_dir line key value now
    local -a paths=()
    [[ $status_dir == /* ]] || { problem=unsafe; return; }
    while [[ -n $path ]]; do
        paths=("$path" "${paths[@]}")
        path=${path%/*}
    done
    # Owner and mode of every directory down to the file, in one fork: bash has no builtin for
    # either. An absolute path, since PATH is the user's.
    # No here-string: before bash 5.1 it is a temporary file in the user's TMPDIR.
    # shellcheck disable=SC2207
    local -a facts=($(LC_ALL=C /usr/bin/stat -c '%u %f' -- / "${paths[@]}" "$file" 2>/dev/null))
    if ((${#facts[@]} != 2 * (${#paths[@]} + 2))); then
        problem=missing
        return
    fi
    local i mode want=040000
    for ((i = 0; i < ${#facts[@]}; i += 2)); do
        ((i == ${#facts[@]} - 2)) && want=0100000
        mode=$((16#${facts[i + 1]}))
        if [[ ${facts[i]} != 0 ]] || ((mode & 022 || (mode & 0170000) != want)); then
            problem=unsafe
            return
        fi
    done
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line == *=* ]] || continue
        key=${line%%=*}
        value=${line#*=}
        case $key in
        version | user | uid | billing_user | updated_at | tier | balance | currency | burn_rate_per_hour | \
            time_to_empty_hours | gpu_blocked | cpu_quota_percent | kill_at | notice | recharge_hint)
            # The terminal gets these strings: no escape sequence may come through.
            printf -v "$key" '%s' "${value//[[:cntrl:]]/}"
            ;;
        esac
    done 2>/dev/null <"$file"
    # Extended patterns, not =~, which would overwrite the user's BASH_REMATCH. Integers stay within
    # 15 digits because bash arithmetic uses them; optional fields are checked as "0" when empty.
    local field
    for field in "$updated_at" "${kill_at:-0}"; do
        [[ $field == +([0-9]) && ${#field} -le 15 ]] || { problem=corrupt; return; }
    done
    for field in "$balance" "${burn_rate_per_hour:-0}" "${time_to_empty_hours:-0}" "${cpu_quota_percent:-0}"; do
        [[ $field == ?(-)+([0-9])?(.+([0-9])) ]] || { problem=corrupt; return; }
    done
    if [[ $version != 1 || $uid != "$UID" || $currency != [A-Z][A-Z][A-Z] || $gpu_blocked != @(|0|1) ]]; then
        problem=corrupt
        return
    fi
    case $tier in normal | warning | limited | blocked | exempt) ;; *)
        problem=corrupt
        return
        ;;
    esac
    # Beyond 300 s either way is stale: a clock far ahead must not keep an old verdict alive.
    printf -v now '%(%s)T' -1
    if ((now - 10#$updated_at > 300 || 10#$updated_at - now > 300)); then
        problem=stale
    fi
}

# Sets the variable named $1 to the exact decimal $2 shown with at least $3 decimals: trailing zeros go,
# no digit is ever rounded away.
_gpuledger_decimal() {
    local whole=${2%%.*} fraction=
    [[ $2 == *.* ]] && fraction=${2#*.}
    while ((${#fraction} > $3)) && [[ $fraction == *0 ]]; do fraction=${fraction%0}; done
    while ((${#fraction} < $3)); do fraction+=0; done
    printf -v "$1" '%s' "$whole${fraction:+.$fraction}"
}

_gpuledger_problem_line() {
    case $problem in
    missing) printf 'gpuledger: no usage status for you on this node yet; GPU jobs are not checked.\n' ;;
    unsafe) printf 'gpuledger: the usage status file is not root-owned and protected; ignored. Please tell an admin.\n' ;;
    corrupt) printf 'gpuledger: the usage status file is unreadable; ignored. Please tell an admin.\n' ;;
    stale) printf 'gpuledger: usage status is out of date (controller not reporting); GPU jobs are not checked.\n' ;;
    esac
}

# The full standing, for the login banner and gpuledger-balance.
_gpuledger_detail() {
    local shown rate left when
    _gpuledger_decimal shown "$balance" 2
    printf 'gpuledger: balance %s %s' "$shown" "$currency"
    [[ -n $billing_user && $billing_user != "$user" ]] && printf ' (charged to %s)' "$billing_user"
    printf ', tier %s\n' "$tier"
    if [[ -n $burn_rate_per_hour ]]; then
        _gpuledger_decimal rate "$burn_rate_per_hour" 2
        printf '  spending %s %s/hour over the last hour' "$rate" "$currency"
        if [[ -n $time_to_empty_hours ]]; then
            _gpuledger_decimal left "$time_to_empty_hours" 1
            printf '; about %s hours until GPU access is blocked' "$left"
        fi
        printf '\n'
    fi
    case $tier in
    warning) printf '  Your balance is running low.\n' ;;
    limited) printf '  New GPU jobs are refused in this shell until you recharge.\n' ;;
    blocked) printf '  Your balance is used up.\n' ;;
    esac
    [[ $gpu_blocked == 1 ]] && printf '  GPU access is blocked on this node: new processes cannot open a GPU.\n'
    [[ -n $cpu_quota_percent ]] && printf "  Your CPU use is limited to %s%% of this node's CPUs.\n" "$cpu_quota_percent"
    if [[ -n $kill_at ]]; then
        printf -v when '%(%Y-%m-%d %H:%M %Z)T' "$((10#$kill_at))"
        printf '  Your GPU processes will be stopped at %s: save your work now.\n' "$when"
    fi
    [[ -n $notice ]] && printf '  Notice: %s\n' "$notice"
    if [[ $tier != normal && $tier != exempt && -n $recharge_hint ]]; then
        printf '  To recharge: %s\n' "$recharge_hint"
    fi
    return 0
}

# Decides whether the GPU command $1 may start (status 0) or is refused (status 1), saying why on stderr.
_gpuledger_admit() {
    local shown left=
    if [[ -n $problem ]]; then
        _gpuledger_problem_line >&2
        return 0
    fi
    _gpuledger_decimal shown "$balance" 2
    case $tier in
    warning)
        [[ -n $time_to_empty_hours ]] && _gpuledger_decimal left "$time_to_empty_hours" 1
        printf 'gpuledger: low balance, %s %s left%s. %s\n' "$shown" "$currency" \
            "${left:+ (about $left hours at the current rate)}" "${recharge_hint:-Run gpuledger-balance.}" >&2
        ;;
    limited | blocked)
        printf 'gpuledger: %s not started: balance %s %s, tier %s; new GPU jobs are refused until you recharge.\n' \
            "$1" "$shown" "$currency" "$tier" >&2
        printf 'gpuledger: %s Details: gpuledger-balance\n' "${recharge_hint:-Ask an admin to recharge.}" >&2
        return 1
        ;;
    esac
    return 0
}

# Body of every wrapper: refuse with status 126 ("cannot execute"), or run the real command unchanged.
_gpuledger_gate() {
    _gpuledger_with_status _gpuledger_admit "$1" || return 126
    command "$@"
}

_gpuledger_exempt_by_config() {
    # \u is bash's own getpwuid() name: unlike $USER, the environment cannot change it.
    local me='\u' name
    me=${me@P}
    for name in $exempt_users; do
        [[ $name == "$me" ]] && return 0
    done
    return 1
}

# Status 1: the user is exempt and must be left untouched.
_gpuledger_on_login() {
    local name
    if _gpuledger_exempt_by_config || [[ -z $problem && $tier == exempt ]]; then
        return 1
    fi
    for name in $wrapped_commands; do
        # Names come from the root-owned configuration; checked anyway, since eval is the only way to
        # define a function whose name is data. `function` keeps a user alias from renaming it.
        [[ $name == [A-Za-z_]*([A-Za-z0-9_.+-]) ]] || continue
        # `|| return` keeps an ERR trap from firing inside the wrapper as well as at the caller.
        eval "function $name { local -; set +aeEuxT; _gpuledger_gate $name \"\$@\" || return; }"
    done
    if shopt -q login_shell; then
        if [[ -n $problem ]]; then _gpuledger_problem_line >&2; else _gpuledger_detail >&2; fi
    fi
    return 0
}

# What gpuledger-balance prints; status 0 when the standing is known, 1 otherwise.
_gpuledger_balance() {
    if _gpuledger_exempt_by_config; then
        printf 'gpuledger: you are exempt from metering on this node.\n'
    elif [[ -n $problem ]]; then
        _gpuledger_problem_line >&2
        return 1
    else
        _gpuledger_detail
    fi
}

if [[ ${_gpuledger_as_library-} != 1 ]] && ! _gpuledger_with_status _gpuledger_on_login; then
    # Exempt users keep only the guard, so that a second sourcing does not read the status again.
    unset -f _gpuledger_config _gpuledger_with_status _gpuledger_read _gpuledger_decimal _gpuledger_problem_line \
        _gpuledger_detail _gpuledger_admit _gpuledger_gate _gpuledger_exempt_by_config _gpuledger_on_login \
        _gpuledger_balance
fi
