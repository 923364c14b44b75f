//! Fused memory attention: each query attends over its K retrieved (key, value) pairs read
//! in place from the bank's token stores by chunk slot, instead of gathering them into a
//! `[B, H, T, K, d]` copy first (537 MB of keys and as much of values at the paper's shape).
//!
//! The kernel is a torch autograd function in C++ (`csrc/memory_attention.cpp`, built by
//! `build.rs`): its backward gives the queries' gradient, recomputing the scores from the
//! bank instead of saving them. The bank takes no gradient, and it must not be written
//! between the forward and the backward (a training step writes after its backward:
//! [`MemoryBank::write_after_backward`]); torch's version check makes such a write an error.
//! The gate's gradient comes from the ordinary tensor ops that mix this output in.

use crate::memory::{MemoryBank, RetrievedSlots};
use std::ffi::{c_char, c_int, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn lm_memory_attention(
        q: *const C_tensor,
        keys: *const C_tensor,
        values: *const C_tensor,
        rows: *const C_tensor,
        mask: *const C_tensor,
        scale: f64,
        tiled: c_int,
        out: *mut *mut C_tensor,
        lse: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn lm_free_error(error: *mut c_char);
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedPath {
    /// The CPU loops for f32 queries over an f32 bank, the tiled ATen ops otherwise.
    Auto,
    /// Always the tiled ATen ops (what CUDA and half-precision banks take), for tests.
    Tiled,
}

/// Memory attention of `queries` `[B, H, T, d]` (scaled as the scores need: their inner
/// product with a key times `scale` is the score) over the chunks `slots` names.
///
/// Returns `(out, lse)`, f32: `out` `[B, H, T, d]` is the softmax-weighted sum of the valid
/// retrieved values (zeros where none is valid), `lse` `[B, H, T]` the log-sum-exp of the
/// valid scores (−inf where none is valid). Both are differentiable in `queries`.
pub fn memory_attention(
    queries: &Tensor,
    bank: &MemoryBank,
    slots: &RetrievedSlots,
    scale: f64,
    path: FusedPath,
) -> (Tensor, Tensor) {
    let (b, h, t, d) = queries.size4().expect("queries must be [B, H, T, d]");
    let kc = slots.rows.size()[3];
    let q = queries.reshape([b * h * t, d]);
    let rows = slots.rows.reshape([b * h * t, kc]);
    let mask = slots.chunk_mask.reshape([b * h * t, kc]);
    let (keys, values) = bank.token_stores();
    let (mut out, mut lse) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: every pointer is a live tensor handle borrowed for the call; on success the
    // kernel hands back two new handles, which the `Tensor`s below take ownership of.
    let error = unsafe {
        lm_memory_attention(
            q.as_ptr(),
            keys.as_ptr(),
            values.as_ptr(),
            rows.as_ptr(),
            mask.as_ptr(),
            scale,
            c_int::from(path == FusedPath::Tiled),
            &mut out,
            &mut lse,
        )
    };
    if !error.is_null() {
        // SAFETY: a non-null result is a NUL-terminated message the kernel allocated.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { lm_free_error(error) };
        panic!("fused memory attention: {message}");
    }
    // SAFETY: both handles are new tensors owned by nobody else.
    let (out, lse) = unsafe { (Tensor::from_ptr(out), Tensor::from_ptr(lse)) };
    (out.view([b, h, t, d]), lse.view([b, h, t]))
}
