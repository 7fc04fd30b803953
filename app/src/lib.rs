//! PriorityCut Studio: the `prioritycut` application, a desktop window (`gui`) and a command line
//! (`cli`). It drives the engine and shows results; it does no tensor math of its own.

pub mod cli;
pub mod gui;
