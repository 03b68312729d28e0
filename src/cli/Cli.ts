/** The `starforge` command tree (contract §1). `bin.ts` runs it. */
import { Command } from "@effect/cli"
import { configCommand } from "./config.js"
import { daemonCommand } from "./daemon.js"
import { dashboardCommand } from "./dashboard.js"
import { dlqCommand } from "./dlq.js"
import { historyCommand } from "./history.js"
import { slotsCommand } from "./slots.js"
import { triggerCommand } from "./trigger.js"
import { worktreesCommand } from "./worktrees.js"

import { VERSION } from "../version.js"

const root = Command.make("starforge").pipe(
  Command.withDescription("Runs AI coding agents in parallel from a queue of JSON trigger files."),
  Command.withSubcommands([daemonCommand, triggerCommand, slotsCommand, dlqCommand, historyCommand, worktreesCommand, configCommand, dashboardCommand])
)

export const run = Command.run(root, { name: "starforge", version: VERSION })
