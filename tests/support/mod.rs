//! Test support: fake Oz server, harness for the real binary.

#![allow(dead_code)]

pub mod collector;
