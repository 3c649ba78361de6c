//! Data-parallel training (score-train's `distributed` module, on burn-collective) checked
//! against one process:
//!
//! 1. two node processes joined through burn's orchestrator on localhost, batch 2 × 128, end 50
//!    steps of the ring MLP with parameters equal to one process trained on batch 256 with the
//!    same data and noise;
//! 2. the same with two workers as threads of one process (the multi-device topology);
//! 3. killing one of two node processes mid-run makes the other exit with the typed
//!    `TrainError::Collective` within its time-out, the last checkpoint stays intact, and a
//!    restart from it ends where an uninterrupted single-process run ends.
//!
//! A plain `main` (`harness = false`): the same binary, started with `SCORE_DIST_ROLE` set, is the
//! orchestrator or a node process of the scenarios, so no other binary has to be built first,
//! and the scenarios run one after another (burn-collective keeps per-process global state).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use burn::backend::{Autodiff, NdArray};
use score_sde::score_core::{AnySde, GaussianMixture, NoiseKey, NoiseSource, VeSde};
use score_sde::score_nets::{
    Parameterization, ScoreModel, TimeEmbeddingConfig, TimeMlp, TimeMlpConfig, param_values,
};
use score_sde::score_train::{
    Checkpoint, DataParallel, NodeAddress, SdeLoss, TrainError, Trainer, TrainerConfig,
    run_orchestrator,
};

type B = Autodiff<NdArray<f32>>;
type Ring = Trainer<B, ScoreModel<B, TimeMlp<B>>>;

const BATCH: usize = 256;
/// Exit code of a node process that stopped with `TrainError::Collective`.
const COLLECTIVE_EXIT: i32 = 3;

/// The ring MLP of the README's 2-D demo (smaller), Adam with warm-up, EMA, clipping: every part
/// of the trainer's step that must agree across workers.
fn ring_trainer(steps: u64, checkpoint: Option<PathBuf>, resume: bool) -> Result<Ring> {
    let dev = Default::default();
    let sde = VeSde::new(0.05, 10.0)?;
    let net = TimeMlpConfig::new(2)
        .with_seed(0)
        .with_hidden_size(64)
        .with_num_layers(2)
        .with_embedding(TimeEmbeddingConfig::new().with_dim(32))
        .init::<B>(&dev)?;
    let model = ScoreModel::new(net, AnySde::Ve(sde), Parameterization::Noise);
    let config = TrainerConfig::new()
        .with_steps(steps)
        .with_learning_rate(2e-3)
        .with_warmup_steps(10)
        .with_seed(5)
        .with_checkpoint_every(Some(5))
        .with_checkpoint_path(checkpoint);
    Ok(if resume {
        Trainer::resume_or_new(model, config)?
    } else {
        Trainer::new(model, config)?
    })
}

/// Trains to the configured step; `pause` slows each step (so a scenario can act mid-run).
fn train(trainer: &mut Ring, pause: Duration) -> Result<()> {
    let dev = Default::default();
    let ring = GaussianMixture::ring(8, 4.0, 0.2)?;
    let sde = VeSde::new(0.05, 10.0)?;
    let data = |step: u64| {
        std::thread::sleep(pause);
        ring.sample::<B>(BATCH, &NoiseSource::new(77), NoiseKey::new(step, 0), &dev)
    };
    trainer.fit(&SdeLoss::new(sde)?, data, &mut ())?;
    Ok(())
}

fn floats(bits: &[u32]) -> Vec<f32> {
    bits.iter().map(|&b| f32::from_bits(b)).collect()
}

/// Largest |a − b| over two parameter vectors of the same model.
fn max_diff(a: &[u32], b: &[u32]) -> f32 {
    assert_eq!(a.len(), b.len(), "parameter counts differ");
    floats(a)
        .iter()
        .zip(floats(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Workers average two half-batch means where one process takes the mean of the whole batch:
/// the same sum in another order, ~1e-7 relative per step in f32. Adam divides by √v, so an
/// update moves by at most ~lr (2e-3) whatever the gradient's size, and rounding differences of
/// the gradient shift it by a tiny fraction of that; over 50 steps the parameters were measured
/// to differ by ~1e-6 (printed below). 1e-4 is far above that and far below the ~1e-2 that one
/// step on other data or other noise moves a parameter by.
const TOLERANCE: f32 = 1e-4;

// ---- child processes -------------------------------------------------------------------------

/// Kills its processes when dropped, so a failed scenario leaves none behind.
struct Procs(Vec<(String, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Procs {
    fn spawn(&mut self, name: &str, env: &[(&str, String)], log: &Path) -> Result<()> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out"))?)
            .stderr(std::fs::File::create(log.with_extension("err"))?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.0.push((name.to_string(), cmd.spawn()?));
        Ok(())
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("a started process")
            .1
    }

    /// Waits for `name` to exit, at most `limit`.
    fn wait(&mut self, name: &str, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child(name).try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                bail!("{name} did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// One orchestrator and `nodes` node processes of a ring run of `steps` steps.
struct Run {
    procs: Procs,
    dir: PathBuf,
}

impl Run {
    fn start(dir: &Path, nodes: usize, steps: u64, extra: &[(&str, String)]) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut procs = Procs(Vec::new());
        let orch = free_port()?;
        procs.spawn(
            "orchestrator",
            &[
                ("SCORE_DIST_ROLE", "orchestrator".into()),
                ("SCORE_DIST_PORT", orch.to_string()),
            ],
            &dir.join("orchestrator"),
        )?;
        for node in 0..nodes {
            let mut env = vec![
                ("SCORE_DIST_ROLE", "node".to_string()),
                ("SCORE_DIST_NODE", node.to_string()),
                ("SCORE_DIST_NODES", nodes.to_string()),
                ("SCORE_DIST_ORCH", format!("ws://127.0.0.1:{orch}")),
                ("SCORE_DIST_PORT", free_port()?.to_string()),
                ("SCORE_DIST_OUT", dir.display().to_string()),
                ("SCORE_DIST_STEPS", steps.to_string()),
            ];
            env.extend(extra.iter().cloned());
            procs.spawn(
                &format!("node{node}"),
                &env,
                &dir.join(format!("node{node}")),
            )?;
        }
        Ok(Self {
            procs,
            dir: dir.to_path_buf(),
        })
    }

    /// Waits until worker 0's checkpoint at `path` holds step `step` or later.
    fn wait_for_checkpoint(&self, path: &Path, step: u64) -> Result<()> {
        let start = Instant::now();
        while Checkpoint::read(path).map_or(true, |c| c.step < step) {
            ensure!(
                start.elapsed() < Duration::from_secs(120),
                "no checkpoint at step {step}: {}",
                self.log(0, "err")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn log(&self, node: usize, ext: &str) -> String {
        read_log(&self.dir.join(format!("node{node}.{ext}")))
    }

    /// Waits for every node to exit with success.
    fn finish(&mut self, nodes: usize) -> Result<Vec<Vec<u32>>> {
        let mut failures = Vec::new();
        for node in 0..nodes {
            let status = self
                .procs
                .wait(&format!("node{node}"), Duration::from_secs(180))?;
            if !status.success() {
                failures.push(format!("node {node} ({status}): {}", self.log(node, "err")));
            }
        }
        ensure!(failures.is_empty(), "{}", failures.join("\n"));
        (0..nodes)
            .map(|node| read_params(&self.dir.join(format!("params-{node}.bin"))))
            .collect()
    }
}

fn read_params(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

/// A node process: joins, trains, writes its parameters to `params-<node>.bin`.
fn node_role(env: &HashMap<String, String>) -> Result<()> {
    let get = |k: &str| -> Result<&String> { env.get(k).with_context(|| format!("{k} not set")) };
    let node: usize = get("SCORE_DIST_NODE")?.parse()?;
    let nodes: usize = get("SCORE_DIST_NODES")?.parse()?;
    let out = PathBuf::from(get("SCORE_DIST_OUT")?);
    let steps: u64 = get("SCORE_DIST_STEPS")?.parse()?;
    let resume = env.contains_key("SCORE_DIST_RESUME");
    let pause = Duration::from_millis(
        env.get("SCORE_DIST_PAUSE_MS")
            .map_or(Ok(0), |v| v.parse())?,
    );
    let timeout = Duration::from_secs(
        env.get("SCORE_DIST_TIMEOUT_S")
            .map_or(Ok(60), |v| v.parse())?,
    );
    // Only worker 0 writes checkpoints; the others get its state when they join.
    let ckpt = (node == 0).then(|| out.join("ckpt.bin"));
    let mut trainer = ring_trainer(steps, ckpt, resume)?;
    let address = NodeAddress {
        orchestrator: get("SCORE_DIST_ORCH")?.clone(),
        host: "127.0.0.1".into(),
        port: get("SCORE_DIST_PORT")?.parse()?,
    };
    let dp = DataParallel::node(node, nodes, &address)?
        .with_op_timeout(timeout)
        .with_join_timeout(Duration::from_secs(
            env.get("SCORE_DIST_JOIN_S").map_or(Ok(60), |v| v.parse())?,
        ));
    trainer.join(dp)?;
    println!("start step {}", trainer.step());
    train(&mut trainer, pause)?;
    trainer.leave()?;
    let bits = param_values(trainer.model());
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    std::fs::write(out.join(format!("params-{node}.bin")), bytes)?;
    Ok(())
}

fn role(role: &str) -> i32 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let result = match role {
        "orchestrator" => env
            .get("SCORE_DIST_PORT")
            .context("SCORE_DIST_PORT not set")
            .and_then(|p| Ok(p.parse::<u16>()?))
            .and_then(|port| Ok(run_orchestrator(port)?)),
        "node" => node_role(&env),
        other => Err(anyhow::anyhow!("unknown role {other}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(
                e.downcast_ref::<TrainError>(),
                Some(TrainError::Collective { .. })
            ) {
                COLLECTIVE_EXIT
            } else {
                1
            }
        }
    }
}

// ---- scenarios -------------------------------------------------------------------------------

fn reference(steps: u64) -> Result<Vec<u32>> {
    let mut t = ring_trainer(steps, None, false)?;
    train(&mut t, Duration::ZERO)?;
    Ok(param_values(t.model()))
}

fn two_nodes_match_one_process(tmp: &Path) -> Result<()> {
    let mut run = Run::start(&tmp.join("equal"), 2, 50, &[])?;
    let params = run.finish(2)?;
    ensure!(
        params[0] == params[1],
        "the two workers' parameters are not bit-identical"
    );
    let single = reference(50)?;
    let diff = max_diff(&params[0], &single);
    println!("two nodes vs one process, 50 steps: max |Δθ| = {diff:.3e}");
    ensure!(diff <= TOLERANCE, "max |Δθ| = {diff:e} > {TOLERANCE:e}");
    // The comparison could fail: a run on a different batch is far from it.
    let init = param_values(ring_trainer(50, None, false)?.model());
    ensure!(
        max_diff(&init, &single) > 100.0 * TOLERANCE,
        "training moved nothing"
    );
    Ok(())
}

fn two_threads_match_one_process() -> Result<()> {
    let workers: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || -> Result<Vec<u32>> {
                let mut t = ring_trainer(50, None, false)?;
                t.join(DataParallel::threads(rank, 2)?.with_op_timeout(Duration::from_secs(60)))?;
                train(&mut t, Duration::ZERO)?;
                t.leave()?;
                Ok(param_values(t.model()))
            })
        })
        .collect();
    let results: Vec<Result<Vec<u32>>> = workers
        .into_iter()
        .map(|w| w.join().expect("worker thread panicked"))
        .collect();
    let errors: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(r, res)| res.as_ref().err().map(|e| format!("worker {r}: {e:#}")))
        .collect();
    ensure!(errors.is_empty(), "{}", errors.join("\n"));
    let params: Vec<Vec<u32>> = results.into_iter().map(|r| r.expect("checked")).collect();
    ensure!(params[0] == params[1], "the two threads' parameters differ");
    let diff = max_diff(&params[0], &reference(50)?);
    println!("two threads vs one process, 50 steps: max |Δθ| = {diff:.3e}");
    ensure!(diff <= TOLERANCE, "max |Δθ| = {diff:e} > {TOLERANCE:e}");
    Ok(())
}

fn killed_worker_then_resume(tmp: &Path) -> Result<()> {
    let dir = tmp.join("fault");
    // 20 ms a step: the run would take ~10 s, it is killed after its third checkpoint.
    let slow = [
        ("SCORE_DIST_PAUSE_MS", "20".to_string()),
        ("SCORE_DIST_TIMEOUT_S", "5".to_string()),
    ];
    let mut run = Run::start(&dir, 2, 500, &slow)?;
    let ckpt = dir.join("ckpt.bin");
    run.wait_for_checkpoint(&ckpt, 15)?;
    run.procs.child("node1").kill()?;
    let killed = Instant::now();
    // The survivor's next all-reduce gets no answer: the typed error after its 5 s time-out.
    let status = run.procs.wait("node0", Duration::from_secs(60))?;
    let waited = killed.elapsed();
    let err = run.log(0, "err");
    println!("survivor exited after {waited:.1?}: {}", err.trim());
    ensure!(
        status.code() == Some(COLLECTIVE_EXIT),
        "survivor exited with {status}, not the collective error: {err}"
    );
    ensure!(err.contains("data-parallel worker 0"), "{err}");
    let saved = Checkpoint::read(&ckpt).context("the last checkpoint is not intact")?;
    ensure!(
        saved.step >= 15 && saved.step < 500,
        "checkpoint at step {}",
        saved.step
    );
    drop(run);
    let killed = dir.join("ckpt-killed.bin");
    std::fs::copy(&ckpt, &killed)?;

    // Restart both (and the orchestrator) for a 60-step run: worker 0 resumes from its
    // checkpoint, worker 1 takes that state when it joins.
    let resume = [("SCORE_DIST_RESUME", "1".to_string())];
    let mut again = Run::start(&dir, 2, 60, &resume)?;
    let params = again.finish(2)?;
    let out = again.log(0, "out");
    ensure!(
        out.contains(&format!("start step {}", saved.step)),
        "worker 0 did not resume at step {}: {out}",
        saved.step
    );
    ensure!(
        again
            .log(1, "out")
            .contains(&format!("start step {}", saved.step))
    );
    ensure!(params[0] == params[1], "the resumed workers differ");
    let diff = max_diff(&params[0], &reference(60)?);
    println!(
        "killed at step ≥ {}, resumed to 60: max |Δθ| to one process = {diff:.3e}",
        saved.step
    );
    ensure!(diff <= TOLERANCE, "max |Δθ| = {diff:e} > {TOLERANCE:e}");

    // The same checkpoint resumed by four workers (threads, batch 4 × 64): a checkpoint holds
    // nothing per worker.
    let workers: Vec<_> = (0..4)
        .map(|rank| {
            let path = dir.join(format!("ckpt-4-{rank}.bin"));
            std::fs::copy(&killed, &path).map(|_| ())?;
            Ok(std::thread::spawn(move || -> Result<(u64, Vec<u32>)> {
                // Each its own copy: only worker 0's is read (the others take its state).
                let mut t = ring_trainer(60, Some(path), true)?;
                t.join(DataParallel::threads(rank, 4)?)?;
                let start = t.step();
                train(&mut t, Duration::ZERO)?;
                t.leave()?;
                Ok((start, param_values(t.model())))
            }))
        })
        .collect::<Result<_>>()?;
    let four: Vec<(u64, Vec<u32>)> = workers
        .into_iter()
        .map(|w| w.join().expect("worker thread panicked"))
        .collect::<Result<_>>()?;
    ensure!(four.iter().all(|(start, _)| *start == saved.step));
    ensure!(
        four.iter().all(|(_, p)| *p == four[0].1),
        "the four workers differ"
    );
    let diff4 = max_diff(&four[0].1, &reference(60)?);
    println!("the same checkpoint resumed by 4 threads: max |Δθ| to one process = {diff4:.3e}");
    ensure!(diff4 <= TOLERANCE, "max |Δθ| = {diff4:e} > {TOLERANCE:e}");
    Ok(())
}

fn stalled_worker_times_out(tmp: &Path) -> Result<()> {
    let dir = tmp.join("stall");
    let slow = [
        ("SCORE_DIST_PAUSE_MS", "20".to_string()),
        ("SCORE_DIST_TIMEOUT_S", "3".to_string()),
    ];
    let mut run = Run::start(&dir, 2, 500, &slow)?;
    let ckpt = dir.join("ckpt.bin");
    run.wait_for_checkpoint(&ckpt, 5)?;
    // A frozen peer (SIGSTOP) keeps its connections open: only the watchdog can end the wait.
    let pid = run.procs.child("node1").id();
    ensure!(
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()?
            .success()
    );
    let stopped = Instant::now();
    let status = run.procs.wait("node0", Duration::from_secs(60))?;
    let waited = stopped.elapsed();
    let err = run.log(0, "err");
    println!(
        "frozen peer: survivor exited after {waited:.1?}: {}",
        err.trim()
    );
    ensure!(status.code() == Some(COLLECTIVE_EXIT), "{status}: {err}");
    ensure!(err.contains("got no answer within 3 s"), "{err}");
    // Its last all-reduce began at most one of the frozen peer's steps (20 ms + compute, well
    // under a second even on a loaded machine) before the freeze; a failure detected through a
    // closed connection instead takes ~0.3 s (the kill scenario).
    ensure!(
        waited >= Duration::from_secs(2),
        "exited after {waited:?}, before the time-out"
    );
    Ok(())
}

/// In a process of its own: a registration that never completes leaves burn-collective's
/// per-process state waiting for good.
fn unreachable_orchestrator_times_out(tmp: &Path) -> Result<()> {
    let dir = tmp.join("unreachable");
    std::fs::create_dir_all(&dir)?;
    let mut procs = Procs(Vec::new());
    let env = [
        ("SCORE_DIST_ROLE", "node".to_string()),
        ("SCORE_DIST_NODE", "0".into()),
        ("SCORE_DIST_NODES", "2".into()),
        // Nothing listens there.
        (
            "SCORE_DIST_ORCH",
            format!("ws://127.0.0.1:{}", free_port()?),
        ),
        ("SCORE_DIST_PORT", free_port()?.to_string()),
        ("SCORE_DIST_OUT", dir.display().to_string()),
        ("SCORE_DIST_STEPS", "10".into()),
        ("SCORE_DIST_JOIN_S", "3".into()),
    ];
    let start = Instant::now();
    procs.spawn("node0", &env, &dir.join("node0"))?;
    let status = procs.wait("node0", Duration::from_secs(60))?;
    let waited = start.elapsed();
    let err = read_log(&dir.join("node0.err"));
    println!("no orchestrator: exited after {waited:.1?}: {}", err.trim());
    ensure!(status.code() == Some(COLLECTIVE_EXIT), "{status}: {err}");
    ensure!(err.contains("joining: got no answer within 3 s"), "{err}");
    Ok(())
}

fn mismatched_settings_fail_every_worker() -> Result<()> {
    let workers: Vec<_> = [50, 60]
        .into_iter()
        .enumerate()
        .map(|(rank, steps)| {
            std::thread::spawn(move || -> Result<String> {
                let mut t = ring_trainer(steps, None, false)?;
                let err = t
                    .join(DataParallel::threads(rank, 2)?)
                    .expect_err("joined with other settings");
                Ok(err.to_string())
            })
        })
        .collect();
    for w in workers {
        let err = w.join().expect("worker thread panicked")?;
        println!("mismatch: {err}");
        ensure!(
            err.contains("worker(s) [1] differ from worker 0's"),
            "{err}"
        );
    }
    Ok(())
}

fn main() {
    if let Ok(r) = std::env::var("SCORE_DIST_ROLE") {
        // Warnings and errors only: burn's WebSocket server would log every transfer.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .try_init();
        std::process::exit(role(&r));
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let scenarios: [(&str, &dyn Fn() -> Result<()>); 6] = [
        ("two_nodes_match_one_process", &|| {
            two_nodes_match_one_process(tmp.path())
        }),
        (
            "two_threads_match_one_process",
            &two_threads_match_one_process,
        ),
        ("killed_worker_then_resume", &|| {
            killed_worker_then_resume(tmp.path())
        }),
        ("stalled_worker_times_out", &|| {
            stalled_worker_times_out(tmp.path())
        }),
        ("unreachable_orchestrator_times_out", &|| {
            unreachable_orchestrator_times_out(tmp.path())
        }),
        (
            "mismatched_settings_fail_every_worker",
            &mismatched_settings_fail_every_worker,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = 0;
    for (name, run) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        match run() {
            Ok(()) => println!("test {name} ... ok ({:.1?})", start.elapsed()),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED ({:.1?}): {e:#}", start.elapsed());
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
