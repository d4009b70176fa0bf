"""Logic nodes: SwitchNode, MergeNode, AsyncMergeNode, WorkflowNode."""
