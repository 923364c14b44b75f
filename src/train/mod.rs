//! Training (DESIGN.md §2.2 "Training"): one loop for backbone pretraining, LongMem SideNet
//! adaptation, MemTRM training and plain continual training.

pub mod checkpoint;
pub mod learner;
pub mod optim;
pub mod precision;
pub mod trainer;

pub use learner::{masked_nll, Learner, Method, StepOutput};
pub use optim::{AdamW, AdamWConfig};
pub use precision::{LossScaler, Precision};
pub use trainer::{train, LogRow, Outcome, TrainConfig, TrainError, TrainSummary};
