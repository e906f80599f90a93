//! The workload generator in simulated time: rates are accurate and change promptly.

use pipeline_tests::workload::{Pattern, Process, Shape, SizeDist, Workload};
use std::time::Duration;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A Poisson stream's count over a window lies within 4 standard deviations of its
/// mean (sqrt(rate x window)), for several seeds.
#[test]
fn poisson_count_is_within_statistical_bounds() {
    for seed in 0..5 {
        let rate = 2_000.0;
        let mut load = Workload::new(vec![Pattern::new("a", rate)], seed);
        let window = 10.0;
        let count = load.due(secs(window)).len() as f64;
        let mean = rate * window;
        let bound = 4.0 * mean.sqrt();
        assert!(
            (count - mean).abs() < bound,
            "seed {seed}: {count} arrivals, expected {mean} +- {bound}"
        );
    }
}

/// Gaps of a Poisson stream are not evenly spaced (its variance is near its mean).
#[test]
fn poisson_gaps_vary_like_an_exponential() {
    let mut load = Workload::new(vec![Pattern::new("a", 1_000.0)], 3);
    let at: Vec<f64> = load
        .due(secs(20.0))
        .iter()
        .map(|a| a.at.as_secs_f64())
        .collect();
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    // Exponential: standard deviation equals the mean.
    let cv = var.sqrt() / mean;
    assert!((0.9..1.1).contains(&cv), "coefficient of variation {cv}");
}

#[test]
fn set_rate_takes_effect_from_the_next_arrival() {
    let mut load = Workload::new(vec![Pattern::new("a", 10.0).process(Process::Even)], 1);
    assert_eq!(load.due(secs(1.0)).len(), 10);
    load.set_rate("a", 500.0).unwrap();
    // The pending arrival at 10/s (due at 1.1 s) is redrawn at 500/s.
    let next = load.due(secs(1.01));
    assert_eq!(next.len(), 5, "{next:?}");
    assert_eq!(load.due(secs(2.01)).len(), 500);
    assert!(load.set_rate("nope", 1.0).is_err());
}

#[test]
fn update_from_a_reloaded_file_replaces_matching_patterns() {
    let mut load = Workload::new(
        vec![
            Pattern::new("a", 10.0).process(Process::Even),
            Pattern::new("b", 5.0).process(Process::Even),
        ],
        1,
    );
    assert_eq!(load.due(secs(1.0)).len(), 15);
    load.update(&[Pattern::new("a", 100.0).process(Process::Even)]);
    let next = load.due(secs(2.0));
    assert_eq!(next.iter().filter(|a| a.pattern == 0).count(), 100);
    assert_eq!(next.iter().filter(|a| a.pattern == 1).count(), 5);
}

#[test]
fn shapes_scale_the_base_rate() {
    let ramp = Shape::Ramp {
        from: 1.0,
        to: 3.0,
        over: secs(10.0),
    };
    assert_eq!(ramp.factor(secs(0.0)), 1.0);
    assert_eq!(ramp.factor(secs(5.0)), 2.0);
    assert_eq!(ramp.factor(secs(20.0)), 3.0);
    let burst = Shape::Burst {
        at: secs(5.0),
        length: secs(2.0),
        factor: 10.0,
    };
    assert_eq!(
        (
            burst.factor(secs(4.9)),
            burst.factor(secs(5.0)),
            burst.factor(secs(7.0))
        ),
        (1.0, 10.0, 1.0)
    );
    let step = Shape::Step {
        at: secs(3.0),
        factor: 0.5,
    };
    assert_eq!((step.factor(secs(2.0)), step.factor(secs(3.0))), (1.0, 0.5));
    let sine = Shape::Sine {
        amplitude: 2.0,
        period: secs(4.0),
    };
    assert!((sine.factor(secs(1.0)) - 3.0).abs() < 1e-9);
    assert_eq!(sine.factor(secs(3.0)), 0.0, "clamped at zero");

    // A 10x burst shows in the counts.
    let mut load = Workload::new(
        vec![Pattern::new("a", 100.0).process(Process::Even).shape(burst)],
        1,
    );
    assert_eq!(load.due(secs(5.0)).len(), 500);
    assert_eq!(load.due(secs(7.0)).len(), 2_000);
    assert_eq!(load.due(secs(8.0)).len(), 100);
}

#[test]
fn a_zero_rate_stream_resumes_when_the_rate_returns() {
    let step = Shape::Step {
        at: secs(2.0),
        factor: 1.0,
    };
    let mut load = Workload::new(
        vec![Pattern::new("a", 0.0).process(Process::Even).shape(step)],
        1,
    );
    assert!(load.due(secs(5.0)).is_empty());
    load.set_rate("a", 10.0).unwrap();
    assert_eq!(load.due(secs(6.0)).len(), 10);
}

#[test]
fn sizes_follow_their_distribution_and_seed() {
    let pattern = Pattern::new("a", 1_000.0).size(SizeDist::Uniform { min: 100, max: 200 });
    let a: Vec<usize> = Workload::new(vec![pattern.clone()], 9)
        .due(secs(1.0))
        .iter()
        .map(|a| a.size)
        .collect();
    let b: Vec<usize> = Workload::new(vec![pattern], 9)
        .due(secs(1.0))
        .iter()
        .map(|a| a.size)
        .collect();
    assert_eq!(a, b, "same seed, same sizes");
    assert!(a.iter().all(|s| (100..=200).contains(s)));
    let mut exp = Workload::new(
        vec![Pattern::new("e", 10_000.0).size(SizeDist::Exponential { mean: 1024.0 })],
        2,
    );
    let sizes: Vec<usize> = exp.due(secs(1.0)).iter().map(|a| a.size).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!((mean - 1024.0).abs() < 60.0, "mean size {mean}");
}
