//! Documents → batches of segments in Transformer-XL order:
//! row r of batch t+1 continues row r of batch t. Each document is cut into
//! non-overlapping segments of T inputs (the last one padded), so a document always starts
//! at a segment boundary, where the row's memory is reset. The stream's position is a small
//! serialisable state, so a resumed run sees exactly the batches it would have seen.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// A token whose value can be known only from an earlier token of the same document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Position of the answer token in its document.
    pub position: usize,
    /// Position of the earlier token that gives it away.
    pub source: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub tokens: Vec<u32>,
    pub answers: Vec<Answer>,
}

/// Where documents come from: any deterministic function of (row, index).
pub trait DocumentSource {
    fn document(&self, row: u64, index: u64) -> Document;
    fn vocab_size(&self) -> i64;
    /// Whether row `row`'s `index`-th document exists. Finite sources that do not cycle
    /// (held-out sets) say no past their end; the stream then serves an empty document.
    fn exists(&self, _row: u64, _index: u64) -> bool {
        true
    }
}

/// Position of one row in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowPosition {
    pub document: u64,
    pub segment: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub rows: Vec<RowPosition>,
}

/// One batch of segments. Target t of a row is the token after input t.
#[derive(Debug)]
pub struct Batch {
    /// `[B, T]` int64
    pub inputs: Tensor,
    /// `[B, T]` int64 (0 where padded)
    pub targets: Tensor,
    /// `[B, T]` f32: 1 where the target is a real token.
    pub loss_mask: Tensor,
    /// `[B, T]` f32: 1 where the target is an answer whose source lies in an earlier
    /// segment, beyond the local window: the tokens memory exists for.
    pub far_mask: Tensor,
    /// `[B, T]` f32: 1 where the target is an answer whose source is within the segment.
    pub near_mask: Tensor,
    /// `[B, T]` int64: document position of the target's source token, −1 if none.
    pub answer_source: Tensor,
    /// Rows whose segment starts a new document (reset their memory first).
    pub reset: Vec<bool>,
    /// Document index of each row's segment.
    pub documents: Vec<u64>,
    /// Token length of each row's current document (0 for a row past a finite source).
    pub doc_lengths: Vec<usize>,
    /// Document position of each row's first input token: target `j` is the token at
    /// `starts[row] + j + 1`.
    pub starts: Vec<usize>,
}

impl Batch {
    /// A batch of inputs `[B, T]` with no targets, continuing each row's document (no
    /// reset): for writing text into memory.
    pub fn unlabelled(inputs: Tensor) -> Self {
        let (b, t) = inputs.size2().expect("inputs must be [B, T]");
        let zeros = || Tensor::zeros([b, t], (Kind::Float, inputs.device()));
        Self {
            targets: Tensor::zeros([b, t], (Kind::Int64, inputs.device())),
            loss_mask: zeros(),
            far_mask: zeros(),
            near_mask: zeros(),
            answer_source: Tensor::full([b, t], -1, (Kind::Int64, inputs.device())),
            reset: vec![false; b as usize],
            documents: vec![0; b as usize],
            doc_lengths: vec![t as usize; b as usize],
            starts: vec![0; b as usize],
            inputs,
        }
    }
}

struct Cached {
    index: u64,
    doc: Arc<Document>,
    /// `source[p]` for answer positions p, else −1.
    source: Vec<i64>,
}

pub struct SegmentStream<S: DocumentSource> {
    source: S,
    segment_len: usize,
    /// Window that "far" is measured against (default: the segment length).
    far_reference: usize,
    device: Device,
    state: StreamState,
    cache: Vec<Option<Cached>>,
}

impl<S: DocumentSource> SegmentStream<S> {
    /// `batch` rows starting at document `first_document` of each row's stream.
    pub fn new(source: S, batch: usize, segment_len: usize, device: Device) -> Self {
        let state = StreamState {
            rows: vec![
                RowPosition {
                    document: 0,
                    segment: 0
                };
                batch
            ],
        };
        let cache = (0..batch).map(|_| None).collect();
        Self {
            source,
            segment_len,
            far_reference: segment_len,
            device,
            state,
            cache,
        }
    }

    /// Measures "far" against segments of `window` tokens instead of this stream's own:
    /// a long-window evaluation then scores exactly the tokens a `window`-token model
    /// could not see locally.
    pub fn with_far_reference(mut self, window: usize) -> Self {
        self.far_reference = window.max(1);
        self
    }

    /// The window "far" is measured against.
    pub fn far_reference(&self) -> usize {
        self.far_reference
    }

    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// Continues from a saved position.
    pub fn set_state(&mut self, state: StreamState) {
        assert_eq!(
            state.rows.len(),
            self.cache.len(),
            "stream state for another batch size"
        );
        self.state = state;
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    fn document(&mut self, row: usize) -> &Cached {
        let index = self.state.rows[row].document;
        let stale = self.cache[row].as_ref().is_none_or(|c| c.index != index);
        if stale {
            let doc = if self.source.exists(row as u64, index) {
                self.source.document(row as u64, index)
            } else {
                Document {
                    tokens: Vec::new(),
                    answers: Vec::new(),
                }
            };
            let mut source = vec![-1i64; doc.tokens.len()];
            for a in &doc.answers {
                source[a.position] = a.source as i64;
            }
            self.cache[row] = Some(Cached {
                index,
                doc: Arc::new(doc),
                source,
            });
        }
        self.cache[row].as_ref().expect("filled above")
    }

    /// The next segment of every row, advancing the stream.
    pub fn next_batch(&mut self) -> Batch {
        let (b, t, reference) = (self.cache.len(), self.segment_len, self.far_reference);
        let mut inputs = vec![0i64; b * t];
        let mut targets = vec![0i64; b * t];
        let mut loss = vec![0f32; b * t];
        let mut far = vec![0f32; b * t];
        let mut near = vec![0f32; b * t];
        let mut answer_source = vec![-1i64; b * t];
        let mut reset = vec![false; b];
        let mut documents = vec![0u64; b];
        let mut doc_lengths = vec![0usize; b];
        let mut starts = vec![0usize; b];
        for row in 0..b {
            let pos = self.state.rows[row];
            let cached = self.document(row);
            let (tokens, sources) = (&cached.doc.tokens, &cached.source);
            let n = tokens.len();
            let start = pos.segment as usize * t;
            for j in 0..t {
                let (p, i) = (start + j, row * t + j);
                if p < n {
                    inputs[i] = tokens[p] as i64;
                }
                if p + 1 < n {
                    targets[i] = tokens[p + 1] as i64;
                    loss[i] = 1.0;
                    let src = sources[p + 1];
                    if src >= 0 {
                        answer_source[i] = src;
                        let window_start = p / reference * reference;
                        if (src as usize) < window_start {
                            far[i] = 1.0;
                        } else {
                            near[i] = 1.0;
                        }
                    }
                }
            }
            reset[row] = pos.segment == 0;
            documents[row] = pos.document;
            doc_lengths[row] = n;
            starts[row] = start;
            let segments = n.saturating_sub(1).div_ceil(t).max(1) as u64;
            self.state.rows[row] = if pos.segment + 1 >= segments {
                RowPosition {
                    document: pos.document + 1,
                    segment: 0,
                }
            } else {
                RowPosition {
                    document: pos.document,
                    segment: pos.segment + 1,
                }
            };
        }
        let shape = [b as i64, t as i64];
        let int = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(self.device);
        let float = |v: &[f32]| {
            Tensor::from_slice(v)
                .view(shape)
                .to_kind(Kind::Float)
                .to_device(self.device)
        };
        Batch {
            inputs: int(&inputs),
            targets: int(&targets),
            loss_mask: float(&loss),
            far_mask: float(&far),
            near_mask: float(&near),
            answer_source: int(&answer_source),
            reset,
            documents,
            doc_lengths,
            starts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row r's document i is `[100r + 10i + 1, …]` of length 7: easy to read back.
    struct Counting;
    impl DocumentSource for Counting {
        fn document(&self, row: u64, index: u64) -> Document {
            let base = (100 * row + 10 * index) as u32;
            let tokens = (1..=7).map(|k| base + k).collect();
            Document {
                tokens,
                answers: vec![Answer { position: 6, source: 1 }, Answer { position: 3, source: 2 }],
            }
        }
        fn vocab_size(&self) -> i64 {
            1000
        }
    }

    fn row(batch: &Batch, field: &Tensor, r: i64) -> Vec<i64> {
        let _ = batch;
        Vec::<i64>::try_from(field.get(r).to_kind(Kind::Int64)).unwrap()
    }

    #[test]
    fn rows_continue_their_own_documents_in_order() {
        let mut s = SegmentStream::new(Counting, 2, 4, Device::Cpu);
        let b1 = s.next_batch();
        assert_eq!(row(&b1, &b1.inputs, 1), vec![101, 102, 103, 104]);
        assert_eq!(row(&b1, &b1.targets, 1), vec![102, 103, 104, 105]);
        assert_eq!(b1.reset, vec![true, true]);
        let b2 = s.next_batch();
        // 7 tokens, 6 targets: two segments, the second padded.
        assert_eq!(row(&b2, &b2.inputs, 0), vec![5, 6, 7, 0]);
        assert_eq!(row(&b2, &b2.targets, 0), vec![6, 7, 0, 0]);
        assert_eq!(row(&b2, &b2.loss_mask, 0), vec![1, 1, 0, 0]);
        assert_eq!(b2.reset, vec![false, false]);
        let b3 = s.next_batch();
        assert_eq!(row(&b3, &b3.inputs, 0), vec![11, 12, 13, 14]);
        assert_eq!(b3.reset, vec![true, true]);
        assert_eq!(b3.documents, vec![1, 1]);
    }

    #[test]
    fn answers_are_far_only_when_their_source_is_in_an_earlier_segment() {
        let mut s = SegmentStream::new(Counting, 1, 4, Device::Cpu);
        let b1 = s.next_batch();
        // Target 3 (input 2) has its source at 2, inside the segment: near.
        assert_eq!(row(&b1, &b1.near_mask, 0), vec![0, 0, 1, 0]);
        assert_eq!(row(&b1, &b1.far_mask, 0), vec![0, 0, 0, 0]);
        let b2 = s.next_batch();
        // Target 6 (input 5, j = 1) has its source at 1, in segment 0: far.
        assert_eq!(row(&b2, &b2.far_mask, 0), vec![0, 1, 0, 0]);
        assert_eq!(row(&b2, &b2.answer_source, 0), vec![-1, 1, -1, -1]);
    }

    /// Row r has documents 0..r+1 only.
    struct Finite;
    impl DocumentSource for Finite {
        fn document(&self, row: u64, index: u64) -> Document {
            Counting.document(row, index)
        }
        fn vocab_size(&self) -> i64 {
            1000
        }
        fn exists(&self, row: u64, index: u64) -> bool {
            index <= row
        }
    }

    #[test]
    fn rows_past_a_finite_source_are_empty_and_masked() {
        let mut s = SegmentStream::new(Finite, 2, 8, Device::Cpu);
        let b1 = s.next_batch();
        assert_eq!(b1.doc_lengths, vec![7, 7]);
        let b2 = s.next_batch();
        // Row 0 has no second document: nothing of it is scored.
        assert_eq!(b2.doc_lengths, vec![0, 7]);
        assert_eq!(row(&b2, &b2.loss_mask, 0), vec![0; 8]);
        assert_eq!(row(&b2, &b2.inputs, 1)[0], 111);
    }

    #[test]
    fn far_can_be_measured_against_another_window() {
        // One 8-token segment; "far" still means "beyond a 4-token window".
        let mut s = SegmentStream::new(Counting, 1, 8, Device::Cpu).with_far_reference(4);
        let b = s.next_batch();
        // Target 6 (input 5) has its source at 1, in the first 4-token window: far.
        assert_eq!(row(&b, &b.far_mask, 0), vec![0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(row(&b, &b.near_mask, 0), vec![0, 0, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_saved_state_resumes_the_same_batches() {
        let mut a = SegmentStream::new(Counting, 2, 4, Device::Cpu);
        for _ in 0..3 {
            a.next_batch();
        }
        let mut b = SegmentStream::new(Counting, 2, 4, Device::Cpu);
        b.set_state(a.state().clone());
        assert!(a.next_batch().inputs.equal(&b.next_batch().inputs));
    }
}
