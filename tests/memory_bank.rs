//! The cache memory bank against brute-force references.

mod common;

use longmem_bench::memory::{BankConfig, BankSharing, Eviction, MemoryBank};
use tch::{Device, Kind, Tensor};

const H: i64 = 2;
const D: i64 = 8;

fn config(batch: i64, capacity: i64, chunk: i64) -> BankConfig {
    BankConfig {
        n_head: H,
        head_dim: D,
        capacity,
        chunk,
        top_k: chunk,
        batch,
        sharing: BankSharing::PerStream,
        eviction: Eviction::Fifo,
        kind: Kind::Float,
        device: Device::Cpu,
    }
}

/// Keys whose every component is the token's stream position (+ a per-row offset), so
/// retrieved contents tell exactly which tokens came back.
fn positional(batch: i64, start: i64, t: i64, row_offset: f64) -> Tensor {
    let pos = Tensor::arange_start(start, start + t, (Kind::Float, Device::Cpu));
    let rows = Tensor::arange(batch, (Kind::Float, Device::Cpu)) * row_offset;
    (pos.view([1, 1, t, 1]) + rows.view([batch, 1, 1, 1]))
        .expand([batch, H, t, D], false)
        .contiguous()
}

/// Brute force: every complete chunk of the stream's last `capacity` tokens, scored
/// against each query, fully sorted.
fn brute_force_top(tokens: &Tensor, queries: &Tensor, capacity: i64, chunk: i64, kc: i64) -> Vec<Vec<Vec<i64>>> {
    // tokens: [H, n, d], queries [H, T, d]
    let n = tokens.size()[1];
    let complete = n / chunk;
    let first = (complete - capacity / chunk).max(0);
    let mut out = vec![];
    for h in 0..H {
        let mut per_t = vec![];
        for t in 0..queries.size()[1] {
            let q = queries.get(h).get(t);
            let mut scored: Vec<(f64, i64)> = (first..complete)
                .map(|ci| {
                    let mean = tokens
                        .get(h)
                        .narrow(0, ci * chunk, chunk)
                        .mean_dim(0, false, Kind::Float);
                    ((&q * mean).sum(Kind::Float).double_value(&[]), ci)
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            per_t.push(scored.iter().take(kc as usize).map(|x| x.1).collect());
        }
        out.push(per_t);
    }
    out
}

#[test]
fn exact_top_k_equals_brute_force_after_wrap_around() {
    let _rng = common::rng_lock(); // libtorch's RNG is shared by parallel tests
    tch::manual_seed(0);
    for chunk in [1, 2, 4, 8] {
        let (capacity, t, batch, k) = (32, 12, 2, 2 * chunk);
        let mut bank = MemoryBank::new(config(batch, capacity, chunk)).unwrap();
        let mut history = Vec::new();
        for _ in 0..7 {
            let keys = Tensor::randn([batch, H, t, D], (Kind::Float, Device::Cpu));
            bank.write(&keys, &(&keys * 2.0));
            history.push(keys);
        }
        let all = Tensor::cat(&history, 2); // [B, H, 84, D]
        let queries = Tensor::randn([batch, H, 5, D], (Kind::Float, Device::Cpu));
        let got = bank.retrieve(&queries, k).unwrap();
        assert_eq!(got.keys.size(), [batch, H, 5, k, D]);
        for b in 0..batch {
            let expected = brute_force_top(&all.get(b), &queries.get(b), capacity, chunk, 2);
            for h in 0..H {
                for q in 0..5 {
                    let ids = Vec::<i64>::try_from(got.chunk_index.get(b).get(h).get(q)).unwrap();
                    assert_eq!(ids, expected[h as usize][q as usize], "c={chunk} b={b} h={h} q={q}");
                    // Keys and values are exactly those chunks' tokens, in order.
                    for (j, ci) in ids.iter().enumerate() {
                        let want = all.get(b).get(h).narrow(0, ci * chunk, chunk);
                        let have = got.keys.get(b).get(h).get(q).narrow(0, j as i64 * chunk, chunk);
                        assert!(want.equal(&have));
                        let have_v = got.values.get(b).get(h).get(q).narrow(0, j as i64 * chunk, chunk);
                        assert!((want * 2.0).equal(&have_v));
                    }
                }
            }
        }
        assert!(bool::try_from(got.mask.all()).unwrap());
    }
}

#[test]
fn fifo_keeps_exactly_the_last_m_tokens_in_order_after_many_wraps() {
    let (capacity, chunk, t) = (16, 4, 6);
    let mut bank = MemoryBank::new(config(1, capacity, chunk)).unwrap();
    let mut written = 0;
    for _ in 0..25 {
        let keys = positional(1, written, t, 0.0);
        bank.write(&keys, &keys);
        written += t;
    }
    // 150 tokens written: 37 complete chunks, the last 4 of them retrievable (tokens 132..148).
    assert_eq!(bank.len_tokens(0), capacity);
    let q = Tensor::ones([1, H, 1, D], (Kind::Float, Device::Cpu));
    let got = bank.retrieve(&q, capacity).unwrap();
    let mut ids = Vec::<i64>::try_from(got.chunk_index.get(0).get(0).get(0)).unwrap();
    ids.sort();
    assert_eq!(ids, vec![33, 34, 35, 36]);
    // Largest keys score highest: chunks come back newest first, tokens in stream order.
    let firsts: Vec<f64> = (0..4)
        .map(|j| got.keys.double_value(&[0, 0, 0, j * chunk, 0]))
        .collect();
    assert_eq!(firsts, vec![144.0, 140.0, 136.0, 132.0]);
    let within: Vec<f64> = (0..4).map(|i| got.keys.double_value(&[0, 1, 0, i, 3])).collect();
    assert_eq!(within, vec![144.0, 145.0, 146.0, 147.0]);
}

#[test]
fn a_partial_chunk_is_carried_over_and_never_retrieved() {
    let (capacity, chunk) = (32, 4);
    let mut bank = MemoryBank::new(config(1, capacity, chunk)).unwrap();
    let q = Tensor::ones([1, H, 1, D], (Kind::Float, Device::Cpu));
    let keys = positional(1, 0, 3, 0.0);
    bank.write(&keys, &keys);
    assert_eq!(bank.len_tokens(0), 0);
    let got = bank.retrieve(&q, 4).unwrap();
    assert!(
        !bool::try_from(got.mask.any()).unwrap(),
        "pending tokens must not be retrievable"
    );
    for start in [3, 6, 9] {
        let keys = positional(1, start, 3, 0.0);
        bank.write(&keys, &keys);
    }
    // 12 tokens in four writes of 3: three complete chunks, the tokens in stream order.
    assert_eq!(bank.len_tokens(0), 12);
    let got = bank.retrieve(&q, 12).unwrap();
    let tokens: Vec<f64> = (0..12).map(|i| got.keys.double_value(&[0, 0, 0, i, 0])).collect();
    assert_eq!(tokens, vec![8., 9., 10., 11., 4., 5., 6., 7., 0., 1., 2., 3.]);
}

#[test]
fn streams_are_isolated_and_reset_independently() {
    let mut bank = MemoryBank::new(config(2, 16, 2)).unwrap();
    let keys = positional(2, 0, 8, 1000.0); // row 1's keys are 1000 + position
    bank.write(&keys, &keys);
    let q = Tensor::ones([2, H, 3, D], (Kind::Float, Device::Cpu));
    let got = bank.retrieve(&q, 4).unwrap();
    assert!(f64::try_from(got.keys.get(0).max()).unwrap() < 8.0);
    assert!(f64::try_from(got.keys.get(1).min()).unwrap() >= 1000.0);

    bank.reset_stream(1);
    let got = bank.retrieve(&q, 4).unwrap();
    assert!(bool::try_from(got.mask.get(0).all()).unwrap());
    assert!(!bool::try_from(got.mask.get(1).any()).unwrap());
    assert_eq!(bank.len_tokens(0), 8);
    assert_eq!(bank.len_tokens(1), 0);
    // After a reset, chunk indices count from the reset. (Later positions, so that the best
    // chunk is unique: ties have no specified order.)
    let later = positional(2, 8, 8, 1000.0);
    bank.write(&later, &later);
    let got = bank.retrieve(&q, 2).unwrap();
    assert_eq!(got.chunk_index.int64_value(&[1, 0, 0, 0]), 3);
    assert_eq!(got.chunk_index.int64_value(&[0, 0, 0, 0]), 7);
    bank.reset_all();
    assert!(!bool::try_from(bank.retrieve(&q, 2).unwrap().mask.any()).unwrap());
}

#[test]
fn a_part_filled_bank_masks_the_slots_it_does_not_have() {
    let mut bank = MemoryBank::new(config(1, 32, 4)).unwrap();
    let keys = positional(1, 0, 8, 0.0); // two chunks
    bank.write(&keys, &keys);
    let q = Tensor::ones([1, H, 2, D], (Kind::Float, Device::Cpu));
    let got = bank.retrieve(&q, 16).unwrap(); // asks for 4 chunks, 2 exist
    let mask = Vec::<bool>::try_from(got.mask.get(0).get(0).get(0)).unwrap();
    assert_eq!(mask, [vec![true; 8], vec![false; 8]].concat());
    let ids = Vec::<i64>::try_from(got.chunk_index.get(0).get(0).get(0)).unwrap();
    assert_eq!(ids, vec![1, 0, -1, -1]);
}

#[test]
fn paper_eviction_drops_twice_the_incoming_amount() {
    let mut cfg = config(1, 16, 4);
    cfg.eviction = Eviction::PaperDouble;
    let mut bank = MemoryBank::new(cfg).unwrap();
    for i in 0..4 {
        let keys = positional(1, 4 * i, 4, 0.0);
        bank.write(&keys, &keys);
    }
    assert_eq!(bank.len_tokens(0), 16); // full
    let keys = positional(1, 16, 4, 0.0);
    bank.write(&keys, &keys); // one chunk arrives: two evicted first
    assert_eq!(bank.len_tokens(0), 12);
    let q = Tensor::ones([1, H, 1, D], (Kind::Float, Device::Cpu));
    let got = bank.retrieve(&q, 16).unwrap();
    let mut ids: Vec<i64> = Vec::<i64>::try_from(got.chunk_index.get(0).get(0).get(0)).unwrap();
    ids.retain(|&i| i >= 0);
    ids.sort();
    assert_eq!(ids, vec![2, 3, 4]);
}

#[test]
fn a_shared_bank_takes_rows_in_order_and_serves_every_row() {
    let mut cfg = config(2, 32, 2);
    cfg.sharing = BankSharing::Shared;
    let mut bank = MemoryBank::new(cfg).unwrap();
    let keys = positional(2, 0, 4, 100.0); // row 0: 0..4, row 1: 100..104
    bank.write(&keys, &keys);
    assert_eq!(bank.len_tokens(0), 8);
    let q = Tensor::ones([2, H, 1, D], (Kind::Float, Device::Cpu));
    let got = bank.retrieve(&q, 8).unwrap();
    for b in 0..2 {
        let mut ids = Vec::<i64>::try_from(got.chunk_index.get(b).get(0).get(0)).unwrap();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3], "row {b} sees every row's chunks");
    }
    assert_eq!(got.keys.double_value(&[0, 0, 0, 0, 0]), 102.0);
}

#[test]
fn state_round_trip_restores_retrieval_exactly() {
    let _rng = common::rng_lock(); // libtorch's RNG is shared by parallel tests
    tch::manual_seed(1);
    let mut a = MemoryBank::new(config(2, 16, 4)).unwrap();
    for _ in 0..5 {
        let keys = Tensor::randn([2, H, 7, D], (Kind::Float, Device::Cpu));
        a.write(&keys, &keys.neg());
    }
    let mut b = MemoryBank::new(config(2, 16, 4)).unwrap();
    b.load_state(&a.state()).unwrap();
    let next = Tensor::randn([2, H, 7, D], (Kind::Float, Device::Cpu));
    a.write(&next, &next);
    b.write(&next, &next); // the pending chunk was restored too
    let q = Tensor::randn([2, H, 3, D], (Kind::Float, Device::Cpu));
    let (ra, rb) = (a.retrieve(&q, 8).unwrap(), b.retrieve(&q, 8).unwrap());
    assert!(ra.keys.equal(&rb.keys) && ra.values.equal(&rb.values) && ra.chunk_index.equal(&rb.chunk_index));
}

#[test]
fn bad_shapes_are_rejected_with_their_numbers() {
    let err = MemoryBank::new(config(1, 30, 4)).unwrap_err().to_string();
    assert!(err.contains("30") && err.contains("chunk size 4"), "{err}");
    let bank = MemoryBank::new(config(1, 32, 4)).unwrap();
    let q = Tensor::ones([1, H, 1, D], (Kind::Float, Device::Cpu));
    let err = bank.retrieve(&q, 6).unwrap_err().to_string();
    assert!(
        err.contains("6") && err.contains("multiple of the chunk size 4"),
        "{err}"
    );
}

#[test]
fn a_top_k_that_is_not_whole_chunks_is_rejected_when_the_bank_is_built() {
    for top_k in [0, -4, 6] {
        let err = MemoryBank::new(BankConfig {
            top_k,
            ..config(1, 32, 4)
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("retrieving {top_k} tokens")) && err.contains("multiple of the chunk size 4"),
            "{err}"
        );
    }
    MemoryBank::new(BankConfig {
        top_k: 8,
        ..config(1, 32, 4)
    })
    .unwrap();
}

#[test]
fn bytes_per_token_is_two_vectors_plus_chunk_keys() {
    let cfg = BankConfig {
        n_head: 16,
        head_dim: 64,
        capacity: 65536,
        chunk: 4,
        batch: 1,
        ..config(1, 16, 4)
    };
    let per_token = cfg.bytes() as f64 / 65536.0;
    assert_eq!(per_token, (2.0 * 1024.0 + 1024.0 / 4.0) * 4.0);
}

/// The blocked CPU search (score blocks folded into a running top-k) returns the same chunks
/// as dense scoring + `topk`, across block edges (T > 256 queries, N > 1024 slots), for
/// full, part-filled, gappy (paper eviction) and shared banks.
#[test]
fn blocked_search_equals_dense_search() {
    let _rng = common::rng_lock(); // libtorch's RNG is shared by parallel tests
    tch::manual_seed(11);
    let cases = [
        ("full, wrapped", BankSharing::PerStream, Eviction::Fifo, 5),
        ("part-filled", BankSharing::PerStream, Eviction::Fifo, 1),
        ("paper eviction", BankSharing::PerStream, Eviction::PaperDouble, 5),
        ("shared", BankSharing::Shared, Eviction::Fifo, 3),
    ];
    for (name, sharing, eviction, writes) in cases {
        let mut cfg = config(2, 2 * 1500, 2);
        (cfg.sharing, cfg.eviction) = (sharing, eviction);
        let mut bank = MemoryBank::new(cfg).unwrap();
        for _ in 0..writes {
            let keys = Tensor::randn([2, H, 700, D], (Kind::Float, Device::Cpu));
            bank.write(&keys, &keys);
        }
        let q = Tensor::randn([2, H, 300, D], (Kind::Float, Device::Cpu));
        for kc in [1, 16] {
            let (dense_slots, dense_top) = bank.search_dense(&q, kc);
            let (slots, top) = bank.search_blocked(&q, kc);
            let finite = dense_top.isfinite();
            assert!(finite.equal(&top.isfinite()), "{name}: valid places differ");
            assert!(
                dense_slots.masked_select(&finite).equal(&slots.masked_select(&finite)),
                "{name}, kc={kc}: slots differ"
            );
            let gap = (dense_top.masked_select(&finite) - top.masked_select(&finite))
                .abs()
                .max();
            assert!(f64::try_from(gap).unwrap() < 1e-4, "{name}: scores differ");
        }
        // `retrieve` takes the blocked path at this size, and gathers the chunks it found:
        // each retrieved chunk's mean key scores what the dense search scored.
        assert!(bank.searches_blocked(2, 300));
        let got = bank.retrieve(&q, 2 * 16).unwrap(); // c = 2: 16 chunks
        let means = got.keys.view([2, H, 300, 16, 2, D]).mean_dim(4, false, Kind::Float);
        let scores = (means * q.unsqueeze(3)).sum_dim_intlist(-1, false, Kind::Float);
        let (_, dense_top) = bank.search_dense(&q, 16);
        let gap = (scores - dense_top).abs().max();
        assert!(
            f64::try_from(gap).unwrap() < 1e-4,
            "{name}: retrieved keys are not the top chunks"
        );
    }
}

/// Grouped-query attention: with 4 query heads over the bank's 2 key/value heads, query
/// head h reads key/value head h / 2, exactly as a bank read by one query per head would,
/// on the dense and on the blocked search path alike.
#[test]
fn grouped_queries_read_their_groups_key_value_head() {
    let _rng = common::rng_lock(); // libtorch's RNG is shared by parallel tests
    tch::manual_seed(12);
    for capacity in [64, 8192] {
        let mut bank = MemoryBank::new(BankConfig {
            top_k: 8,
            ..config(2, capacity, 4)
        })
        .unwrap();
        let written = capacity.min(4096);
        bank.write(
            &Tensor::randn([2, H, written, D], (Kind::Float, Device::Cpu)),
            &Tensor::randn([2, H, written, D], (Kind::Float, Device::Cpu)),
        );
        let t = if capacity > 64 { 96 } else { 5 };
        let queries = Tensor::randn([2, 2 * H, t, D], (Kind::Float, Device::Cpu));
        let grouped = bank.retrieve(&queries, 8).unwrap();
        assert_eq!(grouped.keys.size(), [2, 2 * H, t, 8, D]);
        for member in 0..2 {
            // Query heads `member` and `2 + member`: one per key/value head (0 and 1).
            let heads = Tensor::from_slice(&[member, 2 + member]);
            let alone = bank.retrieve(&queries.index_select(1, &heads), 8).unwrap();
            assert!(
                alone.chunk_index.equal(&grouped.chunk_index.index_select(1, &heads)),
                "{capacity}"
            );
            assert!(alone.keys.equal(&grouped.keys.index_select(1, &heads)), "{capacity}");
            assert!(
                alone.values.equal(&grouped.values.index_select(1, &heads)),
                "{capacity}"
            );
        }
    }
}

/// The dense search under a small score budget scores its queries in tiles (here of 1 to
/// 37 queries) and returns exactly what one untiled pass returns: same slots, same scores,
/// for f32 and f16 banks, partly filled and shared ones, on the CPU (on CUDA in
/// tests/cuda.rs).
#[test]
fn tiled_dense_search_equals_one_untiled_pass() {
    let _rng = common::rng_lock(); // libtorch's RNG is shared by parallel tests
    tch::manual_seed(12);
    for (kind, sharing, writes) in [
        (Kind::Float, BankSharing::PerStream, 3),
        (Kind::Half, BankSharing::PerStream, 1),
        (Kind::Float, BankSharing::Shared, 2),
    ] {
        let mut cfg = config(2, 2 * 600, 2);
        (cfg.kind, cfg.sharing) = (kind, sharing);
        let mut bank = MemoryBank::new(cfg).unwrap();
        for _ in 0..writes {
            let keys = Tensor::randn([2, H, 250, D], (Kind::Float, Device::Cpu)).to_kind(kind);
            bank.write(&keys, &keys);
        }
        let q = Tensor::randn([2, H, 100, D], (Kind::Float, Device::Cpu));
        let (slots, top) = bank.search_dense(&q, 8);
        let per_query = 2 * H * 600 * (4 + if kind == Kind::Float { 0 } else { 2 });
        for tile in [1, 7, 37] {
            bank.set_search_budget(tile * per_query);
            let (tiled_slots, tiled_top) = bank.search_dense(&q, 8);
            assert!(
                tiled_slots.equal(&slots),
                "{kind:?} {sharing:?}, tiles of {tile}: slots differ"
            );
            // The matmul may pick another kernel for another tile shape: scores agree to
            // rounding.
            let gap = f64::try_from((&tiled_top - &top).abs().nan_to_num(0.0, 0.0, 0.0).max()).unwrap();
            assert!(
                gap < 1e-3,
                "{kind:?} {sharing:?}, tiles of {tile}: scores differ by {gap}"
            );
        }
    }
}

/// A full per-stream f32 bank of 8,192 tokens in chunks of 4 (2,048 chunks) with `keys` as
/// token keys, and 512 queries per head: large enough for the blocked search.
fn blocked_bank(keys: &Tensor) -> MemoryBank {
    let mut bank = MemoryBank::new(BankConfig {
        top_k: 32,
        ..config(1, 8192, 4)
    })
    .unwrap();
    bank.write(keys, keys);
    assert!(bank.searches_blocked(1, 512), "the shape takes the blocked search");
    bank
}

/// Slots of every query row as sorted sets.
fn slot_sets(slots: &Tensor) -> Vec<Vec<i64>> {
    let kc = slots.size()[3];
    let flat = Vec::<i64>::try_from(slots.reshape([-1])).unwrap();
    flat.chunks(kc as usize)
        .map(|row| {
            let mut row = row.to_vec();
            row.sort();
            row
        })
        .collect()
}

/// The bf16 search (where the CPU has AVX-512 BF16) gives the f32 search's ids: on random
/// keys, with tied chunks, and on near-identical keys bf16 cannot tell apart, where its
/// certificate must send rows back to f32.
#[test]
fn bf16_search_returns_the_f32_ids() {
    let mut bank = blocked_bank(&Tensor::zeros([1, H, 8192, D], (Kind::Float, Device::Cpu)));
    bank.allow_bf16_search(true);
    if bank.search_precision() != longmem_bench::memory::SearchPrecision::Bf16 {
        common::skip("avx512bf16", "this CPU lacks AVX-512 BF16: the search stays in f32");
        return;
    }
    let _lock = common::rng_lock();
    tch::manual_seed(3);
    let random = Tensor::randn([1, H, 8192, D], (Kind::Float, Device::Cpu));
    // Chunks 0..64 repeated at 64..128: every tie is between two slots.
    let tied = random.copy();
    tied.narrow(2, 256, 256).copy_(&random.narrow(2, 0, 256));
    // One direction plus noise at 1e-4: bf16 (8 significant bits) cannot rank these.
    let near = Tensor::ones([1, H, 8192, D], (Kind::Float, Device::Cpu)) + random.copy() * 1e-4;
    let queries = Tensor::randn([1, H, 512, D], (Kind::Float, Device::Cpu));
    for (keys, label, must_rescan) in [
        (&random, "random", false),
        (&tied, "tied", false),
        (&near, "near-identical", true),
    ] {
        let mut bank = blocked_bank(keys);
        bank.allow_bf16_search(false);
        let (f32_slots, f32_scores) = bank.search(&queries, 8);
        bank.allow_bf16_search(true);
        let (slots, scores) = bank.search(&queries, 8);
        let (rows, rescanned) = bank.bf16_search_stats();
        assert_eq!(
            rows,
            (H * 512) as u64,
            "{label}: every query row went through the bf16 search"
        );
        let (want, got) = (slot_sets(&f32_slots), slot_sets(&slots));
        let same = want.iter().zip(&got).filter(|(a, b)| a == b).count();
        assert_eq!(
            same,
            want.len(),
            "{label}: {} of {} rows differ",
            want.len() - same,
            want.len()
        );
        assert!(
            (scores - f32_scores).abs().max().double_value(&[]) < 1e-4,
            "{label}: scores"
        );
        if must_rescan {
            assert!(
                rescanned > 0,
                "{label}: bf16 cannot certify these rows, yet none was rescanned"
            );
        } else {
            assert!(rescanned < rows / 10, "{label}: {rescanned} of {rows} rows rescanned");
        }
    }
}
