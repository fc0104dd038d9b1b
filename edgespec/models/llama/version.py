"""The version of the graph graph.py builds, apart from it: finding a cached export reads it without
importing onnx (0.5-5 s at start-up)."""

# Bumped whenever graph.py's graph changes, so exports cached on first use are rebuilt.
GRAPH_VERSION = 8  # 2: stacked q/k/v and gate/up, SkipSimplifiedLayerNormalization; 3: extra_embeds by default;
                   # 4: If nodes on the skippable (middle) layers only; 5: q/k/v and gate/up stacked across
                   # routes (quant/linear.py _common_form); 6: no If nodes unless --layer-plans;
                   # 7: new_key.i / new_value.i outputs (contract 4); 8: those only with --new-rows (contract 5)
STATIC_GRAPH_VERSION = 3  # 2: the default recipe's planned weights, as the dynamic export; 3: stacking as 5
