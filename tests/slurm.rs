//! A real single-node Slurm (Debian's slurm-wlm, started by `tests/slurm/local-slurm.sh`):
//! a sweep submitted as a job array ends with the same table as a local run, and a task
//! signalled mid-training checkpoints, requeues itself and completes with nothing lost or
//! duplicated. Skipped, with a `SKIPPED:` line giving the reason ([`common::skip`]), where
//! Slurm is not installed or cannot start (it needs root); `just test-slurm` fails there
//! instead.

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The running private Slurm; stopped (by the PIDs it recorded) when dropped.
struct Slurm {
    root: PathBuf,
    script: PathBuf,
}

impl Slurm {
    fn start(root: &Path) -> Option<Self> {
        let missing = ["sbatch", "slurmctld", "slurmd", "munged"]
            .into_iter()
            .find(|p| which(p).is_none());
        if let Some(p) = missing {
            common::skip(
                "slurm",
                &format!("{p} is not installed (apt-get install slurm-wlm munge)"),
            );
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/local-slurm.sh");
        let up = std::process::Command::new("bash")
            .arg(&script)
            .arg("up")
            .arg(root)
            .status();
        if !up.as_ref().is_ok_and(|s| s.success()) {
            let _ = std::process::Command::new("bash")
                .arg(&script)
                .arg("down")
                .arg(root)
                .status();
            common::skip(
                "slurm",
                &format!("a local Slurm could not be started (see {}/log)", root.display()),
            );
            return None;
        }
        Some(Self {
            root: root.to_path_buf(),
            script,
        })
    }

    fn conf(&self) -> PathBuf {
        self.root.join("slurm.conf")
    }

    fn command(&self, program: &str) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// Waits until the job has left the queue.
    fn wait(&self, job: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let out = self.command("squeue").args(["-h", "-j", job]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(start.elapsed() < limit, "job {job} still queued after {limit:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(&self.script)
            .arg("down")
            .arg(&self.root)
            .status();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn write(dir: &Path, steps: u64) -> PathBuf {
    let file = dir.join("slurmmini.toml");
    let sweep = "method = [\"longmem\", \"plain\"]\n\"eval.memory_size\" = [16, 32]";
    std::fs::write(&file, common::mini_experiment("slurmmini", steps, sweep)).unwrap();
    file
}

/// `runs.csv` rows of the measured (not timed) metrics, sorted.
fn table(experiment: &Path, out: &Path) -> Vec<String> {
    Command::cargo_bin("longmem")
        .unwrap()
        .arg("report")
        .arg(experiment)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let mut rows: Vec<String> = csv
        .lines()
        .filter(|l| {
            [",perplexity,", ",far_nll,", ",near_nll,", ",hit_rate_any_head,"]
                .iter()
                .any(|m| l.contains(m))
        })
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

/// The table of the experiment at `steps` training steps, swept locally in one process.
fn local_table(steps: u64) -> Vec<String> {
    let local = tempfile::tempdir().unwrap();
    let file = write(local.path(), steps);
    Command::cargo_bin("longmem")
        .unwrap()
        .args(["-q", "sweep"])
        .arg(&file)
        .assert()
        .success();
    table(&file, &local.path().join("report"))
}

fn submit(slurm: &Slurm, experiment: &Path) -> String {
    let out = Command::cargo_bin("longmem")
        .unwrap()
        .env("SLURM_CONF", slurm.conf())
        .args(["-q", "slurm", "--submit"])
        .arg(experiment)
        .assert()
        .success();
    String::from_utf8_lossy(&out.get_output().stdout).trim().to_string()
}

#[test]
fn a_job_array_on_real_slurm_matches_a_local_run_and_survives_a_requeue() {
    let slurm_dir = tempfile::tempdir().unwrap();
    let Some(slurm) = Slurm::start(slurm_dir.path()) else {
        return;
    };
    let start = Instant::now();

    // The same sweep, locally and as a 2-task array (one training run per task).
    let expected = local_table(30);
    let cluster = tempfile::tempdir().unwrap();
    let file = write(cluster.path(), 30);
    let job = submit(&slurm, &file);
    slurm.wait(&job, Duration::from_secs(240));
    common::assert_all_done_once(&file);
    let metadata = std::fs::read_to_string(
        std::fs::read_dir(cluster.path().join("runs/train"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("metadata.json"),
    )
    .unwrap();
    assert!(
        metadata.contains(&format!("\"SLURM_ARRAY_JOB_ID\": \"{job}\"")),
        "{metadata}"
    );
    assert_eq!(table(&file, &cluster.path().join("report")), expected);

    // A task told to stop (USR1, as before a time limit) checkpoints, marks its run
    // interrupted, requeues itself and finishes: same numbers, every run done once.
    let expected = local_table(400);
    let requeued = tempfile::tempdir().unwrap();
    let file = write(requeued.path(), 400);
    let job = submit(&slurm, &file);
    let train = requeued.path().join("runs/train");
    let waited = Instant::now();
    let has_checkpoint = || common::has_checkpoint(&train);
    while !has_checkpoint() {
        assert!(waited.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = slurm
        .command("scancel")
        .args(["--signal=USR1", "--batch", &format!("{job}_0"), &format!("{job}_1")])
        .status();
    slurm.wait(&job, Duration::from_secs(300));
    common::assert_all_done_once(&file);
    let logs: String = std::fs::read_dir(&train)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("log.txt")).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("interrupted after step"),
        "no run was interrupted: {logs}"
    );
    assert_eq!(table(&file, &requeued.path().join("report")), expected);
    eprintln!("real-Slurm test took {:.1} s", start.elapsed().as_secs_f64());
}
