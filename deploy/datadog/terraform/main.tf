# mailprobe's Datadog dashboard and monitors as Terraform resources (Datadog provider 3.x).
#
# The monitors are read from ../monitors/*.json and the dashboard from ../dashboard.json, so the
# JSON files stay the one source: what the UI or API import creates, this creates too.
#
#   export DD_API_KEY=... DD_APP_KEY=...      # DD_SITE for another site, e.g. datadoghq.eu
#   terraform init && terraform apply -var 'notify=@slack-mail-ops'
#
# See docs/datadog.md.

terraform {
  required_version = ">= 1.3"
  required_providers {
    datadog = {
      source  = "DataDog/datadog"
      version = "~> 3.40"
    }
  }
}

# Credentials and site come from DD_API_KEY, DD_APP_KEY and DD_HOST (or DD_SITE).
provider "datadog" {}

variable "notify" {
  description = "Notification handles appended to every monitor's message, e.g. \"@slack-mail-ops @pagerduty-mail\". Empty: none."
  type        = string
  default     = ""
}

variable "extra_tags" {
  description = "Tags added to every monitor, e.g. [\"env:prod\"]."
  type        = list(string)
  default     = []
}

locals {
  monitor_dir = "${path.module}/../monitors"
  monitors = {
    for f in fileset(local.monitor_dir, "*.json") :
    trimsuffix(f, ".json") => jsondecode(file("${local.monitor_dir}/${f}"))
  }
}

resource "datadog_dashboard_json" "mailprobe" {
  dashboard = file("${path.module}/../dashboard.json")
}

resource "datadog_monitor" "mailprobe" {
  for_each = local.monitors

  name     = each.value.name
  type     = each.value.type
  query    = each.value.query
  message  = var.notify == "" ? each.value.message : "${each.value.message}\n${var.notify}"
  tags     = concat(each.value.tags, var.extra_tags)
  priority = tostring(each.value.priority)

  monitor_thresholds {
    critical = each.value.options.thresholds.critical
    warning  = try(each.value.options.thresholds.warning, null)
  }

  notify_no_data      = each.value.options.notify_no_data
  no_data_timeframe   = try(each.value.options.no_data_timeframe, null)
  renotify_interval   = each.value.options.renotify_interval
  renotify_statuses   = each.value.options.renotify_statuses
  require_full_window = each.value.options.require_full_window
  include_tags        = each.value.options.include_tags
  new_group_delay     = each.value.options.new_group_delay
  notify_audit        = each.value.options.notify_audit
}

output "dashboard_url" {
  value = datadog_dashboard_json.mailprobe.url
}
