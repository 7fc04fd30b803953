//! PriorityCut Studio: the `prioritycut` application. It drives the engine and shows results;
//! it does no tensor math of its own.

pub mod cli;
pub mod sheet;
