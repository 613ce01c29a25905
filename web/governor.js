// Restoration Governor frontend extension (the queue panel is built on top of this).
import { app } from "../../scripts/app.js";

app.registerExtension({
  name: "restoration-governor.core",
});
