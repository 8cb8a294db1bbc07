// The two towers of every family: token ids → text embedding, normalised pixels → image embedding.
#pragma once

#include <cstdint>
#include <span>

#include "imgsearch/status.h"
#include "model/config.h"
#include "model/weights.h"

namespace imgsearch::model {

// Embeds token sequences. CLIP's ([SOT] … [EOT]) are computed only up to each EOT (the highest id):
// the causal mask means later positions never influence it. SigLIP's are computed whole and pooled
// at their last position. Sequences of similar length are batched (they share their matrix
// products). Writes seqs.size() · projection_dim floats, in order: the same embeddings as one
// sequence at a time.
Status EncodeTextBatch(const ModelConfig& c, const TextWeights& w, std::span<const std::span<const int32_t>> seqs,
                       float* out);

// Embeds n_images images, each `input_floats` floats laid out as image.h's Normalize writes them for
// the model's preprocessing: [3, image_size, image_size], or NaFlex's patch grid. Writes n ·
// projection_dim floats.
Status EncodeImageBatch(const ModelConfig& c, const VisionWeights& w, const float* inputs, int64_t input_floats,
                        int n_images, float* out);

}  // namespace imgsearch::model
