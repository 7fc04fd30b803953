//! PriorityCut Studio: the `prioritycut` application, a desktop window (`gui`, the `window`
//! feature) and a command line (`cli`). It drives the engine and shows results; it does no tensor
//! math of its own.

pub mod assets;
pub mod cli;
#[cfg(feature = "window")]
pub mod gui;
