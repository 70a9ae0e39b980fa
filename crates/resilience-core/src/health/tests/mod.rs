//! Tests of the health module, one file per source file.

mod active;
mod checks;
mod composite;
mod config;
mod instance;
mod system;
mod tracker;
