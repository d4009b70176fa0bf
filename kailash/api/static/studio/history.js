// Undo and redo for the canvas: snapshots of the workflow after each settled change.
//
// This module owns the history only. A change is recorded once the model has been quiet
// for a moment (a drag is one step, not one per pixel); undo and redo load a snapshot
// back into the model. Loading another workflow (a "reset" not made here) starts a new
// history.

const LIMIT = 200;

export class History {
  constructor(model, { onChange } = {}) {
    this.model = model;
    this.onChange = onChange || (() => {});
    this.stack = [];
    this.index = -1;
    this.timer = null;
    this.restoring = false;
    model.onChange((what) => {
      if (this.restoring) return;
      if (what === "reset") { this.clear(); return; }
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.commit(), 200);
    });
  }

  snapshot() { return JSON.stringify(this.model.toDict()); }

  clear() {
    clearTimeout(this.timer);
    this.stack = [this.snapshot()];
    this.index = 0;
    this.onChange(this);
  }

  commit() {
    clearTimeout(this.timer);
    this.timer = null;
    const snap = this.snapshot();
    if (snap === this.stack[this.index]) return;
    this.stack = this.stack.slice(0, this.index + 1);
    this.stack.push(snap);
    if (this.stack.length > LIMIT) this.stack.shift();
    this.index = this.stack.length - 1;
    this.onChange(this);
  }

  get canUndo() { return this.index > 0 || this.timer !== null; }
  get canRedo() { return this.index < this.stack.length - 1 && this.timer === null; }

  undo() {
    if (this.timer !== null) this.commit(); // a change still settling is the step to undo
    if (this.index <= 0) return false;
    this.index--;
    this.restore();
    return true;
  }

  redo() {
    if (this.timer !== null) this.commit();
    if (this.index >= this.stack.length - 1) return false;
    this.index++;
    this.restore();
    return true;
  }

  restore() {
    this.restoring = true;
    try {
      this.model.load(JSON.parse(this.stack[this.index]));
      this.model.changed("graph"); // a change like any other: dirty, validated again
    } finally {
      this.restoring = false;
    }
    this.onChange(this);
  }
}
