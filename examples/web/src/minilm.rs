//! The MiniLM example's modules (`examples/embed/`), compiled into the page as the example's
//! `main.rs` declares them: one model code for the native example, its tests and the browser.
#![allow(dead_code)]

#[path = "../../embed/bert.rs"]
pub mod bert;
#[path = "../../embed/config.rs"]
pub mod config;
#[path = "../../embed/forward.rs"]
pub mod forward;
#[path = "../../embed/ops.rs"]
pub mod ops;
#[path = "../../embed/tokens.rs"]
pub mod tokens;
#[path = "../../embed/weights.rs"]
pub mod weights;
