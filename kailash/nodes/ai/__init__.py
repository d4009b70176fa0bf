"""AI nodes: model providers, agents that share memory and a cache, self-organising teams.

* :mod:`.providers` — one chat interface with tool calls; offline (default),
  OpenAI-compatible, Ollama and Anthropic providers chosen by config.
* :mod:`.llm_agent` — ``LLMAgentNode``, one agent call with MCP tools.
* :mod:`.a2a` — ``SharedMemoryPoolNode``, ``A2ACoordinatorNode``, ``A2AAgentNode``.
* :mod:`.self_organizing` — ``ProblemAnalyzerNode``, ``AgentPoolManagerNode``,
  ``TeamFormationNode``, ``SelfOrganizingAgentNode``, ``SolutionEvaluatorNode``.
* :mod:`.intelligent_agent_orchestrator` — ``OrchestrationManagerNode``, ``MCPAgentNode``,
  ``IntelligentCacheNode``, ``ConvergenceDetectorNode``.
* :mod:`.embeddings` — the ``Embedder`` protocol, a hashing default and MiniLM.

This package imports nothing; import from the modules.
"""
