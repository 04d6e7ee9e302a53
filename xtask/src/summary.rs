//! The closing tally of `cargo xtask test`: libtest's result lines added up, with the
//! privileged tests that skipped moved from passed to skipped.
//!
//! libtest reports a test that returned early as passed, and captures what it printed. So
//! `wecan_tests::skip_privileged` also appends one line per skip to the file named by
//! [`SKIP_LOG_VAR`], which `test` sets for the run and reads afterwards. A skip is allowed
//! only with [`SKIP_VAR`]`=1`; any other is an error naming the tests.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Set to 1, lets privileged tests skip (the same name as `wecan_tests::SKIP_VAR`).
pub const SKIP_VAR: &str = "WECAN_SKIP_PRIVILEGED";
/// The file skips are recorded in (the same name as `wecan_tests::SKIP_LOG_VAR`).
pub const SKIP_LOG_VAR: &str = "WECAN_SKIP_LOG";

/// Passed, failed and skipped tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Tally {
    /// Adds a libtest result line ("test result: ok. 6 passed; 0 failed; 1 ignored; …");
    /// other lines are ignored. Ignored tests did not run: they count as skipped.
    pub fn add_libtest_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        self.passed += count(rest, " passed");
        self.failed += count(rest, " failed");
        self.skipped += count(rest, " ignored");
    }

    pub fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }

    /// Moves the recorded `skips` (each a test libtest counted as passed) to skipped.
    pub fn add_skips(&mut self, skips: &[String]) -> Result<()> {
        let n = skips.len() as u64;
        if n > self.passed {
            bail!(
                "{n} skips recorded but only {} tests passed: the skip log is stale",
                self.passed
            );
        }
        self.passed -= n;
        self.skipped += n;
        Ok(())
    }

    /// The closing line CI reads.
    pub fn line(&self) -> String {
        format!("wecan: {} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// The skips recorded in `log` (one "BINARY: TEST" line each); none if it was never
/// written.
pub fn read_skips(log: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(log) {
        Ok(text) => Ok(parse_skips(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading the skip log {}", log.display())),
    }
}

fn parse_skips(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// An error naming the skipped tests unless skipping was opted into (`opted_out`).
pub fn check_skips(skips: &[String], opted_out: bool) -> Result<()> {
    if skips.is_empty() || opted_out {
        return Ok(());
    }
    bail!(
        "{} privileged tests skipped without {SKIP_VAR}=1 (run as root, or opt out explicitly): {}",
        skips.len(),
        skips.join(", ")
    )
}

/// The number before `label` in a cargo test result line ("ok. 6 passed; 0 failed; …").
fn count(line: &str, label: &str) -> u64 {
    line.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s";
    const FAILED: &str = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.50s";

    #[test]
    fn result_lines_add_up_and_other_lines_do_not_count() {
        let mut t = Tally::default();
        for line in [OK, "test a ... ok", "running 8 tests", FAILED, "   passed; 9 failed"] {
            t.add_libtest_line(line);
        }
        assert_eq!(t, Tally { passed: 9, failed: 2, skipped: 1 });
    }

    #[test]
    fn recorded_skips_move_from_passed_to_skipped() {
        let mut t = Tally::default();
        t.add_libtest_line(OK);
        let skips = parse_skips("datapath: truncation\n\nrelay_chain: chain\n");
        assert_eq!(skips, ["datapath: truncation", "relay_chain: chain"]);
        t.add_skips(&skips).unwrap();
        assert_eq!(t, Tally { passed: 4, failed: 0, skipped: 3 });
        assert_eq!(t.line(), "wecan: 4 passed, 0 failed, 3 skipped");
        // More skips than passes: the log is not this run's.
        assert!(t.add_skips(&vec!["x".to_string(); 5]).is_err());
    }

    #[test]
    fn skips_fail_the_run_unless_opted_out() {
        let skips = vec!["probes: answered_in_xdp".to_string(), "impair: link".to_string()];
        assert!(check_skips(&[], false).is_ok());
        assert!(check_skips(&skips, true).is_ok());
        let e = check_skips(&skips, false).unwrap_err().to_string();
        assert!(e.contains("probes: answered_in_xdp, impair: link"), "{e}");
        assert!(e.contains("WECAN_SKIP_PRIVILEGED=1"), "{e}");
    }

    #[test]
    fn the_log_is_read_back_and_a_missing_one_holds_none() {
        let log = std::env::temp_dir().join(format!("xtask-skips-{}.log", std::process::id()));
        assert_eq!(read_skips(&log).unwrap(), Vec::<String>::new());
        std::fs::write(&log, "datapath: truncation\nprobes: rtt\n").unwrap();
        let skips = read_skips(&log);
        std::fs::remove_file(&log).unwrap();
        assert_eq!(skips.unwrap(), ["datapath: truncation", "probes: rtt"]);
    }
}
