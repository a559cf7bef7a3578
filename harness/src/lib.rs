//! deploybench: boots one reference web service under several deployment models and
//! measures what each costs in boot time, memory, image size, CPU and latency.
//!
//! Data flows one way: a [`scenario`] tells which [`models`] to boot; the models boot
//! instances through the [`engine`] from [`artifacts`]; [`measure`] and [`load`]
//! produce samples; [`results`] stores them; [`report`] reads only stored results.

pub mod artifacts;
pub mod audit;
pub mod compare;
pub mod engine;
pub mod load;
pub mod measure;
pub mod models;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
