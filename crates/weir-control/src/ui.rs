//! The topology page `weir control` serves at `/ui`: one self-contained HTML file (no external
//! scripts or styles) that draws `/api/v1/topology` as a live graph.

pub const PAGE: &str = include_str!("ui/topology.html");
