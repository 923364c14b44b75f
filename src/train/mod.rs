//! Training: one loop for backbone pretraining, LongMem SideNet
//! adaptation, MemTRM training and plain continual training.

pub mod checkpoint;
pub mod optim;
pub mod precision;
pub mod records;
pub mod trainer;

pub use optim::AdamW;
pub use precision::LossScaler;
pub use records::{LogRow, StalenessRow};
pub use trainer::{train, Outcome, TrainError, TrainSummary};
