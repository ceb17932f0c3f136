//! A run of a config: its plan (the fixed context: config, task, device, folders, seeds), the three
//! stages that each hand the next a file (the teacher and its targets, the student, the export), the
//! checks and stamps around them, and the pipeline that calls them in order and hands the report its
//! context.

pub mod augment;
pub mod card;
pub mod check;
pub mod device;
pub mod export;
pub mod online;
pub mod pipeline;
pub mod plan;
pub mod preflight;
pub mod ranks;
pub mod stamp;
pub mod student;
pub mod teacher;

pub use export::ExportStage;
pub use plan::Plan;
pub use student::StudentStage;
pub use teacher::TeacherStage;
