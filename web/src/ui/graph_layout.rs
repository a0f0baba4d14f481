//! Where the graph page draws each task and edge of a DAG (pure geometry, no I/O):
//! Sugiyama-style layers left to right (a task's layer is the longest path to it from a
//! root), a lane for each edge through every layer it skips, layers ordered by barycenters,
//! and the SVG path of each edge.

use std::collections::HashMap;

use upiflow_engine::Dag;

pub(super) const NODE_W: f64 = 200.0;
pub(super) const NODE_H: f64 = 38.0;
/// Height of the slot a long edge takes in a layer it passes through.
const LANE_H: f64 = 10.0;
pub(super) const GAP_X: f64 = 70.0;
const GAP_Y: f64 = 18.0;
const PAD: f64 = 12.0;

/// Where each task and edge goes.
pub(super) struct Layout {
    /// `(task index in dag.tasks, x, y)` of each node's top left corner, in topological order.
    pub nodes: Vec<(usize, f64, f64)>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

/// An edge between two tasks (indexes into `dag.tasks`).
pub(super) struct Edge {
    pub from: usize,
    pub to: usize,
    /// For an edge that skips layers, `(x_left, x_right, y)` of its lane through each layer
    /// in between.
    pub lanes: Vec<(f64, f64, f64)>,
}

/// A slot in a layer: a task, or the lane of an edge passing through.
struct Slot {
    task: Option<usize>,
    preds: Vec<usize>,
    succs: Vec<usize>,
}

/// Sugiyama-style: longest-path layering; edges that skip layers get a lane (a virtual node)
/// in each layer they cross, so they run between tasks instead of through them; then layers
/// are ordered by barycenters (down, up, down again).
pub(super) fn layout(dag: &Dag) -> Layout {
    let index: HashMap<&str, usize> = dag
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut layer = vec![0usize; dag.tasks.len()];
    for t in dag.topological() {
        let i = index[t.id.as_str()];
        layer[i] = t
            .upstream
            .iter()
            .filter_map(|u| index.get(u.as_str()))
            .map(|&u| layer[u] + 1)
            .max()
            .unwrap_or(0);
    }
    let depth = layer.iter().copied().max().map_or(0, |m| m + 1);
    // Slots 0..n are the tasks (in topological order within each layer to start with).
    let mut slots: Vec<Slot> = (0..dag.tasks.len())
        .map(|i| Slot {
            task: Some(i),
            preds: Vec::new(),
            succs: Vec::new(),
        })
        .collect();
    let mut slot_layer = layer.clone();
    let mut edges: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (i, t) in dag.tasks.iter().enumerate() {
        for u in t
            .upstream
            .iter()
            .filter_map(|u| index.get(u.as_str()).copied())
        {
            let mut lanes = Vec::new();
            let mut prev = u;
            for l in layer[u] + 1..layer[i] {
                let v = slots.len();
                slots.push(Slot {
                    task: None,
                    preds: vec![prev],
                    succs: Vec::new(),
                });
                slots[prev].succs.push(v);
                slot_layer.push(l);
                lanes.push(v);
                prev = v;
            }
            slots[prev].succs.push(i);
            slots[i].preds.push(prev);
            edges.push((u, i, lanes));
        }
    }
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for t in dag.topological() {
        let i = index[t.id.as_str()];
        layers[layer[i]].push(i);
    }
    for (v, &l) in slot_layer.iter().enumerate().skip(dag.tasks.len()) {
        layers[l].push(v);
    }
    let mut row = vec![0.0_f64; slots.len()];
    for members in &layers {
        for (r, &v) in members.iter().enumerate() {
            row[v] = r as f64;
        }
    }
    let sweep = |layers: &mut Vec<Vec<usize>>, row: &mut Vec<f64>, down: bool| {
        let order: Vec<usize> = if down {
            (0..layers.len()).collect()
        } else {
            (0..layers.len()).rev().collect()
        };
        for l in order {
            let mut keyed: Vec<(f64, usize)> = layers[l]
                .iter()
                .map(|&v| {
                    let near = if down {
                        &slots[v].preds
                    } else {
                        &slots[v].succs
                    };
                    let key = if near.is_empty() {
                        row[v]
                    } else {
                        near.iter().map(|&n| row[n]).sum::<f64>() / near.len() as f64
                    };
                    (key, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(row[a.1].total_cmp(&row[b.1])));
            layers[l] = keyed.into_iter().map(|(_, v)| v).collect();
            for (r, &v) in layers[l].iter().enumerate() {
                row[v] = r as f64;
            }
        }
    };
    sweep(&mut layers, &mut row, true);
    sweep(&mut layers, &mut row, false);
    sweep(&mut layers, &mut row, true);

    let slot_h = |v: usize| {
        if slots[v].task.is_some() {
            NODE_H
        } else {
            LANE_H
        }
    };
    let column_height = |members: &[usize]| {
        members.iter().map(|&v| slot_h(v)).sum::<f64>()
            + members.len().saturating_sub(1) as f64 * GAP_Y
    };
    let tallest = layers.iter().map(|m| column_height(m)).fold(0.0, f64::max);
    let mut pos = vec![(0.0, 0.0); slots.len()];
    for (l, members) in layers.iter().enumerate() {
        let mut y = PAD + (tallest - column_height(members)) / 2.0;
        for &v in members {
            pos[v] = (PAD + l as f64 * (NODE_W + GAP_X), y);
            y += slot_h(v) + GAP_Y;
        }
    }
    let nodes = dag
        .topological()
        .map(|t| {
            let i = index[t.id.as_str()];
            (i, pos[i].0, pos[i].1)
        })
        .collect();
    let edges = edges
        .into_iter()
        .map(|(from, to, lanes)| Edge {
            from,
            to,
            lanes: lanes
                .into_iter()
                .map(|v| (pos[v].0, pos[v].0 + NODE_W, pos[v].1 + LANE_H / 2.0))
                .collect(),
        })
        .collect();
    Layout {
        nodes,
        edges,
        width: depth as f64 * NODE_W + depth.saturating_sub(1) as f64 * GAP_X + 2.0 * PAD,
        height: tallest + 2.0 * PAD,
    }
}

/// The SVG path of an edge: smooth curves between layers, straight through its lanes.
pub(super) fn edge_path(from: (f64, f64), lanes: &[(f64, f64, f64)], to: (f64, f64)) -> String {
    let bend = GAP_X / 2.0;
    let mut d = format!("M {:.1} {:.1}", from.0, from.1);
    let mut at = from;
    let curve = |d: &mut String, at: (f64, f64), x: f64, y: f64| {
        d.push_str(&format!(
            " C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            at.0 + bend,
            at.1,
            x - bend,
            y,
            x,
            y
        ));
    };
    for &(left, right, y) in lanes {
        curve(&mut d, at, left, y);
        d.push_str(&format!(" L {right:.1} {y:.1}"));
        at = (right, y);
    }
    curve(&mut d, at, to.0, to.1);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DAG of noops, each `(id, upstreams)`.
    fn dag(tasks: &[(&str, &[&str])]) -> Dag {
        let tasks: Vec<serde_json::Value> = tasks
            .iter()
            .map(|(id, ups)| {
                serde_json::json!({
                    "id": id, "kind": "noop", "upstream": ups, "trigger_rule": "all_success",
                    "retry": {"retries": 0, "retry_delay": {"secs": 300, "nanos": 0},
                              "exponential_backoff": false, "max_retry_delay": null},
                    "timeout": null, "config": null,
                })
            })
            .collect();
        Dag::from_json(serde_json::json!({
            "dag_id": "g", "description": null, "schedule": "none", "timezone": "UTC",
            "start_date": null, "end_date": null, "catchup": false, "max_active_runs": 1,
            "tags": [], "params": {}, "tasks": tasks, "fileloc": "g.toml",
        }))
        .expect("valid DAG")
    }

    #[test]
    fn layers_follow_the_longest_path() {
        // a -> b -> c, and a -> c directly: c sits in layer 2, not 1.
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])]);
        let l = layout(&d);
        let x: HashMap<&str, f64> = l
            .nodes
            .iter()
            .map(|&(i, x, _)| (d.tasks[i].id.as_str(), x))
            .collect();
        assert!(x["a"] < x["b"] && x["b"] < x["c"]);
        assert_eq!(l.edges.len(), 3);
        // a -> c skips layer 1, so it gets a lane there, clear of b.
        let lanes: Vec<usize> = l.edges.iter().map(|e| e.lanes.len()).collect();
        assert_eq!(lanes.iter().sum::<usize>(), 1);
        let (_, _, by) = l
            .nodes
            .iter()
            .find(|n| d.tasks[n.0].id == "b")
            .copied()
            .unwrap();
        let lane_y = l.edges.iter().find_map(|e| e.lanes.first()).unwrap().2;
        assert!(
            lane_y < by || lane_y > by + NODE_H,
            "the lane does not cross b"
        );
    }
}
