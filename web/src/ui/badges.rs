//! The coloured state labels of runs, task instances, tries and backfills, and the legend of
//! their colours.

use maud::{Markup, html};

/// A coloured state label (task or run state; `none` for a task not yet ready).
pub(super) fn state_badge(state: &str) -> Markup {
    html! { span class={ "state state-" (state) } { (state.replace('_', " ")) } }
}

/// The colours of the states.
pub(super) fn legend() -> Markup {
    html! {
        div.legend {
            @for st in ["none", "scheduled", "queued", "running", "success", "failed",
                        "up_for_retry", "upstream_failed", "skipped"] {
                (state_badge(st)) " "
            }
        }
    }
}
