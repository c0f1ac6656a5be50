//! CPU time and resident memory of a process, sampled from `/proc/PID/stat` and
//! `/proc/PID/status` (Linux). Used for `--pid` (the broker) and for the tool itself.

use anyhow::{bail, Context};

/// One sample of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size now.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`).
    pub peak_rss_bytes: u64,
}

#[allow(unsafe_code, reason = "libc::sysconf for the clock tick")]
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime in clock ticks from the text of `/proc/PID/stat`. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no `)` in /proc stat line");
    };
    // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("short /proc stat line");
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/PID/status`, in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Samples a process; `pid == None` samples this process.
pub fn sample(pid: Option<u32>) -> anyhow::Result<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("cannot read {dir}/stat (is the process running?)"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("cannot read {dir}/status"))?;
    let ticks = parse_stat_ticks(&stat)?;
    let rss_bytes = parse_status_kb(&status, "VmRSS").unwrap_or(0);
    Ok(ProcessSample {
        cpu_s: ticks as f64 / clock_ticks_per_s(),
        rss_bytes,
        peak_rss_bytes: parse_status_kb(&status, "VmHWM").unwrap_or(rss_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(line).unwrap(), 325);
        assert!(parse_stat_ticks("1234 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("garbage").is_err());
    }

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tmagnetar\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(100 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(200 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(sample(Some(u32::MAX)).is_err());
    }
}
