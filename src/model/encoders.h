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

// Embeds n_images images given as [n, 3, image_size, image_size]. Writes n · projection_dim floats.
void EncodeImageBatch(const ModelConfig& c, const VisionWeights& w, const float* pixels, int n_images, float* out);

}  // namespace imgsearch::model
