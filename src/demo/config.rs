//! The demo daemon's configuration: short intervals, both simulated
//! providers, the webhook secrets and the ring when there is one.

use super::{DEMO_GREEN_ID, DemoOptions, human, session_name};

pub(super) fn config_text(
    db: &std::path::Path,
    waha_url: &str,
    green_url: &str,
    o: &DemoOptions,
) -> String {
    format!(
        r#"
[daemon]
database = {db:?}
listen = "127.0.0.1:0"
discovery_interval = "10s"

[canary]
interval = "{interval}"
jitter = 0.1
timeout = "10s"
ack_timeout = "{ack}"

[policy]
# Stuck canaries show after three probes here, to keep the demo short.
send_failure_confirmations = 3
confirm_interval = "{confirm}"
restart_poll_interval = "2s"
restart_timeout = "1m"
backoff_initial = "10s"

[[provider]]
name = "waha-demo"
kind = "waha"
url = "{waha_url}"
api_key_env = "DEMO_WAHA_API_KEY"
sessions = ["*"]
webhook_hmac_key_env = "DEMO_WAHA_HOOK_KEY"

[[provider]]
name = "green-demo"
kind = "green-api"
url = "{green_url}"
id_instance = "{DEMO_GREEN_ID}"
api_token_env = "DEMO_GREEN_API_TOKEN"
webhook_token_env = "DEMO_GREEN_HOOK_TOKEN"

[provider.policy]
# A stuck queue shows after three canaries here, to keep the demo short.
send_failure_confirmations = 3
{ring}"#,
        interval = human(o.canary_interval),
        confirm = human(o.confirm_interval),
        ack = human(o.ack_timeout),
        ring = match &o.ring {
            None => String::new(),
            Some(r) => format!(
                "\n[[ring]]\nname = \"demo-ring\"\nmembers = [\"waha-demo/{}\", \"waha-demo/{}\", \
                 \"green-demo/{DEMO_GREEN_ID}\"]\ninterval = \"{}\"\ndeadline = \"{}\"\n",
                session_name(r.members.0),
                session_name(r.members.1),
                human(r.interval),
                human(r.deadline),
            ),
        },
    )
}
