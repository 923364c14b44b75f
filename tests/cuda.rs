//! CUDA paths: the same code on a GPU. Every test here skips on a machine without CUDA, such
//! as CI's, printing a `SKIPPED:` line ([`common::skip`]); `just test-cuda` runs them and
//! fails where there is no GPU.

mod common;

use common::max_abs_diff;
use longmem_bench::config::{self, Spec};
use longmem_bench::models::{weights, Backbone, BackboneConfig};
use longmem_bench::train::{train, Outcome};
use tch::{nn::VarStore, Device};

fn cuda() -> Option<Device> {
    if tch::Cuda::is_available() {
        Some(Device::Cuda(0))
    } else {
        common::skip(
            "cuda",
            "no CUDA device here (`just test-cuda` runs this on a machine with a GPU)",
        );
        None
    }
}

#[test]
fn a_cuda_forward_matches_the_cpu_forward() {
    let Some(gpu) = cuda() else { return };
    let _rng = common::rng_lock();
    let mut config = BackboneConfig::newgpt(64, 2, 4, 32, 64);
    config.dropout = 0.0;
    let cpu_vs = VarStore::new(Device::Cpu);
    let cpu_model = Backbone::new(&cpu_vs.root(), &config);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    weights::save_safetensors(&cpu_vs, &path).unwrap();
    let gpu_vs = VarStore::new(gpu);
    let gpu_model = Backbone::new(&gpu_vs.root(), &config);
    weights::load_safetensors(&gpu_vs, &path, &config).unwrap();
    let ids = common::random_ids(1, 2, 16, 64);
    let a = tch::no_grad(|| cpu_model.forward(&ids, false).logits);
    let b = tch::no_grad(|| gpu_model.forward(&ids.to_device(gpu), false).logits).to_device(Device::Cpu);
    assert!(max_abs_diff(&a, &b) < 1e-3);
}

#[test]
fn longmem_trains_on_cuda_in_f32_and_f16() {
    let Some(_gpu) = cuda() else { return };
    for precision in ["f32", "f16"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BackboneConfig::newgpt(97, 2, 2, 16, 32);
        config.dropout = 0.0;
        let vs = VarStore::new(Device::Cpu);
        let _ = Backbone::new(&vs.root(), &config);
        weights::save_safetensors(&vs, &dir.path().join("backbone.safetensors")).unwrap();
        let text = format!(
            r#"
device = "cuda"
out_dir = "out"
method = "longmem"
[backbone]
style = "newgpt"
n_layer = 2
n_head = 2
n_embd = 16
memory_layer = 1
weights = "backbone.safetensors"
[memory]
size = 64
chunk = 4
k = 8
dtype = "{}"
[data]
kind = "recall"
doc_tokens = 64
[train]
steps = 4
batch_size = 2
segment_len = 16
precision = "{precision}"
"#,
            if precision == "f16" { "f16" } else { "f32" }
        );
        let spec = Spec::parse(&text, &dir.path().join("spec.toml")).unwrap();
        let device = spec.device.resolve().unwrap();
        let mut learner = spec.build_model(device).unwrap();
        let mut stream = config::train_stream(&spec, device).unwrap();
        let Outcome::Finished(summary) =
            train(learner.as_mut(), &mut stream, &spec.train, &spec.out_dir, None).unwrap()
        else {
            panic!("not finished")
        };
        assert!(summary.final_loss.is_finite(), "{precision}: {summary:?}");
    }
}

/// The tiled dense search on a GPU (the path every CUDA search takes) equals one untiled
/// pass, and the CPU's dense search of the same bank.
#[test]
fn tiled_cuda_search_equals_the_untiled_one_and_the_cpu() {
    use longmem_bench::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
    use tch::{Kind, Tensor};
    let Some(gpu) = cuda() else { return };
    let _rng = common::rng_lock();
    tch::manual_seed(13);
    let (h, d, n) = (4, 16, 2048);
    let config = |device| BankConfig {
        n_head: h,
        head_dim: d,
        capacity: n * 2,
        chunk: 2,
        top_k: 16,
        batch: 2,
        sharing: BankSharing::PerStream,
        eviction: Eviction::Fifo,
        kind: Kind::Half,
        device,
    };
    let keys = Tensor::randn([2, h, 3000, d], (Kind::Float, Device::Cpu)).to_kind(Kind::Half);
    let q = Tensor::randn([2, h, 256, d], (Kind::Float, Device::Cpu));
    let mut cpu = MemoryBank::new(config(Device::Cpu)).unwrap();
    cpu.write(&keys, &keys);
    let mut bank = MemoryBank::new(config(gpu)).unwrap();
    bank.write(&keys.to_device(gpu), &keys.to_device(gpu));
    let (slots, top) = bank.search_dense(&q.to_device(gpu), 8);
    bank.set_search_budget(2 * h * n * 6 * 10); // tiles of 10 queries
    let (tiled_slots, tiled_top) = bank.search_dense(&q.to_device(gpu), 8);
    assert!(tiled_slots.equal(&slots));
    assert!(max_abs_diff(&tiled_top, &top) < 1e-3);
    let (_, cpu_top) = cpu.search_dense(&q, 8);
    assert!(max_abs_diff(&top.to_device(Device::Cpu), &cpu_top) < 1e-2);
}

/// Fused memory attention on CUDA (the tiled ATen path, f16 bank) equals the same problem's
/// CPU result, values and query gradients.
#[test]
fn cuda_fused_memory_attention_matches_the_cpu() {
    use longmem_bench::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
    use longmem_bench::models::fused::{memory_attention, FusedPath};
    use tch::{Kind, Tensor};
    let Some(gpu) = cuda() else { return };
    let _rng = common::rng_lock();
    let bank_on = |device: Device, kind: Kind, keys: &Tensor, values: &Tensor| {
        let mut bank = MemoryBank::new(BankConfig {
            n_head: 2,
            head_dim: 16,
            capacity: 64,
            chunk: 4,
            top_k: 8,
            batch: 2,
            sharing: BankSharing::PerStream,
            eviction: Eviction::Fifo,
            kind,
            device,
        })
        .unwrap();
        bank.write(&keys.to_device(device), &values.to_device(device));
        bank
    };
    // Keys and values exactly representable in f16, so both banks hold the same numbers.
    let keys = Tensor::randn([2, 2, 40, 16], (Kind::Float, Device::Cpu))
        .to_kind(Kind::Half)
        .to_kind(Kind::Float);
    let values = keys.randn_like().to_kind(Kind::Half).to_kind(Kind::Float);
    let q = Tensor::randn([2, 2, 6, 16], (Kind::Float, Device::Cpu));
    let run = |device: Device, kind: Kind| {
        let bank = bank_on(device, kind, &keys, &values);
        let q = q.to_device(device).set_requires_grad(true);
        let slots = bank.retrieve_slots(&q, 8).unwrap();
        let (out, _) = memory_attention(&q, &bank, &slots, 0.25, FusedPath::Auto);
        let grad = Tensor::run_backward(&[(&out * &out).sum(Kind::Float)], &[&q], false, false).remove(0);
        (out.to_device(Device::Cpu), grad.to_device(Device::Cpu))
    };
    let (want, want_grad) = run(Device::Cpu, Kind::Float);
    let (got, got_grad) = run(gpu, Kind::Half);
    assert!(max_abs_diff(&got, &want) < 1e-4, "values differ");
    assert!(max_abs_diff(&got_grad, &want_grad) < 1e-4, "query gradients differ");
}
