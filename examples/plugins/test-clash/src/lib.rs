//! Test fixture: a plugin whose one requirement ID comes from `MAILPROBE_TEST_CLASH_ID`
//! (default `imap.login`, one of mailprobe's own), so that tests can make it clash with a
//! built-in requirement or with another plugin's.
#![deny(unsafe_code)]

use mailprobe_plugin_sdk::{Context, Output, Plugin, Requirement, RequirementResult};

#[derive(Default)]
pub struct Clash;

impl Plugin for Clash {
    type Config = ();
    const NAME: &'static str = "clash";

    fn requirements(&self) -> Vec<Requirement> {
        let id = std::env::var("MAILPROBE_TEST_CLASH_ID").unwrap_or_else(|_| "imap.login".into());
        vec![Requirement::new(id, "clashes on purpose")]
    }

    fn run(&self, _config: (), _cx: &Context, out: &mut Output) -> Result<(), String> {
        out.report(RequirementResult::pass(
            "clash.never",
            "should never be loaded",
        ));
        Ok(())
    }
}

mailprobe_plugin_sdk::export_plugin!(Clash);
