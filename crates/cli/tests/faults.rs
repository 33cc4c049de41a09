//! The quick fault matrix against the real `cls` binary: every fault of `cls-faults` once, on
//! small accounts, three trials at a time. Each trial must end equal to the emulator's export,
//! or failed/partial naming its fault and then recover; a "succeeded" run with anything
//! missing fails this test. The report table is printed (`--nocapture` shows it).

use std::path::PathBuf;

use cls_faults::{run_matrix, Fault, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_ends_equal_to_the_export_or_failed_with_its_cause() {
    let harness = Harness {
        cls_bin: PathBuf::from(env!("CARGO_BIN_EXE_cls")),
        customers: 40,
    };
    // A fixed first seed keeps CI reproducible; `cls-faults --soak` tries random ones.
    let trials: Vec<(Fault, u64)> = Fault::quick_matrix()
        .into_iter()
        .enumerate()
        .map(|(i, f)| (f, 1_000 + i as u64))
        .collect();
    let started = std::time::Instant::now();
    let report = run_matrix(&harness, &trials, 3).await;
    println!("{}", report.render());
    assert_eq!(
        report.rows.values().map(|r| r.trials).sum::<u64>(),
        trials.len() as u64
    );
    assert!(report.passed(), "{}", report.render());
    assert!(
        started.elapsed().as_secs() < 600,
        "the quick matrix must stay under 10 minutes"
    );
}
