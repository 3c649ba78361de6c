//! Trains the MNIST judge on `Autodiff<Flex>` and writes its weights and manifest (default: the
//! repository's `data/judge/`, where the shipped judge lives), then prints the judge's figures
//! (test accuracy, calibration on real digits and junk, the report on real digits, the floor).
//!
//! `cargo run --release -p score-eval --example train_judge [-- --out DIR --mnist DIR]`
//!
//! The shipped judge took 363 s to train here (release, 2 shared cores).

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use clap::Parser;
use score_core::{NoiseKey, NoiseSource};
use score_data::mnist::{Mnist, Split, default_dir};
use score_eval::judge::{
    CONFIDENT, Judge, JudgeTrainingConfig, accuracy, box_blur, gaussian_noise, store, train_judge,
    uniform_noise,
};

#[derive(Parser)]
struct Args {
    /// Where the weights and manifest go.
    #[arg(long, default_value_os_t = Judge::<Flex>::default_dir())]
    out: PathBuf,
    /// MNIST directory (IDX files, raw or gzip).
    #[arg(long, default_value_os_t = default_dir())]
    mnist: PathBuf,
    /// Epochs (default: the shipped configuration's).
    #[arg(long)]
    epochs: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = JudgeTrainingConfig::shipped();
    if let Some(e) = args.epochs {
        config.epochs = e;
    }
    let train = Mnist::load(&args.mnist, Split::Train)?;
    let test = Mnist::load(&args.mnist, Split::Test)?;
    let device = Default::default();
    let start = Instant::now();
    let net = train_judge::<Autodiff<Flex>>(&config, &train.images, &train.labels, &device, true)?;
    let seconds = start.elapsed().as_secs_f64();
    let acc = accuracy::<Flex>(&net, &test.images, &test.labels, &device);
    println!(
        "trained in {seconds:.1} s; test accuracy {:.2} %",
        100.0 * acc
    );
    let manifest = store::save(
        &args.out,
        &net,
        &config,
        acc,
        seconds,
        "Autodiff<Flex>, release",
    )?;
    println!(
        "wrote {}:\n{}",
        args.out.display(),
        serde_json::to_string_pretty(&manifest)?
    );

    let judge = Judge::new(net, &test, &device)?;
    let n = 256;
    let real: Vec<f32> = test.images[..n * 784]
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    let noise = NoiseSource::new(11);
    let junk = [
        ("real test digits", real.clone()),
        (
            "uniform noise",
            uniform_noise(n, &noise, NoiseKey::new(0, 0)),
        ),
        (
            "Gaussian noise",
            gaussian_noise(n, 0.1307, 0.3081, &noise, NoiseKey::new(0, 1)),
        ),
        ("blur radius 3", box_blur(&real, 3)),
        ("blur radius 4", box_blur(&real, 4)),
    ];
    for (name, x) in junk {
        let c = judge.confidences(&x, n)?;
        let k = c.iter().filter(|&&p| p >= CONFIDENT).count();
        println!("{name}: {k}/{n} with confidence >= {CONFIDENT}");
    }
    let report = judge.evaluate(&real, n)?;
    println!(
        "report on {n} real test digits: {}",
        serde_json::to_string(&report)?
    );
    println!(
        "floor ({} training digits): {}",
        score_eval::judge::FLOOR_SIZE,
        judge.floor(&train)?
    );
    Ok(())
}
