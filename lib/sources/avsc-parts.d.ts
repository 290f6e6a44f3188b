/**
 * Declarations for the two avsc modules the Currents reader loads directly (lib/sources/braze-avro.ts):
 * avsc's own typings cover only its entry point, whose values these are.
 */
declare module "avsc/lib/types.js" {
  const types: { readonly Type: typeof import("avsc").Type; readonly builtins: typeof import("avsc").types };
  export default types;
}

declare module "avsc/lib/containers.js" {
  const containers: { readonly streams: typeof import("avsc").streams };
  export default containers;
}
